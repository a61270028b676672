"""Writes iris.csv and iris_profiles.csv next to this file.

iris.csv is scikit-learn's bundled copy of Fisher's Iris data with short column names and a
`sample_id`; iris_profiles.csv is made up (a fixed seed, so the file is the same every time).

    python samples/data/generate.py
"""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

here = Path(__file__).resolve().parent

iris = load_iris(as_frame=True)
data = iris.data.rename(
    columns={
        "sepal length (cm)": "sepal_length",
        "sepal width (cm)": "sepal_width",
        "petal length (cm)": "petal_length",
        "petal width (cm)": "petal_width",
    }
)
data["species"] = iris.target.map(dict(enumerate(iris.target_names)))
data.insert(0, "sample_id", range(1, len(data) + 1))
data.to_csv(here / "iris.csv", index=False)

# A made-up profile per sample: where and when it was collected. It carries no information about
# the species. Three samples have no profile, so that join-profile has something to report.
rng = np.random.default_rng(1936)
profiles = pd.DataFrame(
    {
        "sample_id": data["sample_id"],
        "site": rng.choice(["north", "south", "east"], size=len(data)),
        "collected_year": rng.integers(2019, 2024, size=len(data)),
    }
)
profiles = profiles[~profiles["sample_id"].isin([13, 77, 142])]
profiles.to_csv(here / "iris_profiles.csv", index=False)
