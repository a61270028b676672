"""featurize: standardise numeric columns, one-hot encode categorical ones, keep the target.

    python featurize.py --data joined.parquet --target species --id sample_id

Writes data.parquet (the id column if given, the features, the target) and transform.json, the
fitted featurization that train puts into the model so that it can be applied to raw rows:

    {"numeric": [{"name", "mean", "scale"}], "categorical": [{"name", "categories"}],
     "order": [feature names], "target": "...", "id": "..." or null}

A numeric feature is (x - mean) / scale; a categorical column becomes one 0/1 feature per category
(a category not seen here sets none of them). The features come in `order`: the numeric columns,
then each categorical column's categories.
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def fail(message):
    sys.exit(f"error: {message}")


def one_line(error):
    return " ".join(str(error).split())


def read_table(path):
    """A CSV or Parquet file as a DataFrame, chosen by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        fail(f"{path}: expected a .csv or .parquet file")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except Exception as e:
        fail(f"cannot read {path}: {one_line(e)}")


def names(text):
    return [c.strip() for c in text.split(",") if c.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--numeric", default="")
    parser.add_argument("--categorical", default="")
    parser.add_argument("--id", default="")
    parser.add_argument("--columns", default="")
    args = parser.parse_args()

    data = read_table(args.data)
    keep = [c for c in (args.id, args.target) if c]
    named = names(args.columns) + names(args.numeric) + names(args.categorical)
    missing = [c for c in dict.fromkeys(keep + named) if c not in data.columns]
    if missing:
        fail(f"no column {', '.join(missing)}; the table has: {', '.join(map(str, data.columns))}")

    # Columns not named are inferred from their types, among `columns` when it is given; the
    # target and the id are never features.
    if names(args.columns):
        outside = [c for c in names(args.numeric) + names(args.categorical) if c not in names(args.columns)]
        if outside:
            fail(f"column {', '.join(outside)} is not among columns ({args.columns})")
        pool = data[[c for c in names(args.columns) if c not in keep]]
    else:
        pool = data.drop(columns=keep)
    rest = pool.drop(columns=names(args.numeric) + names(args.categorical))
    numeric = names(args.numeric) or list(rest.select_dtypes(include="number").columns)
    categorical = names(args.categorical) or list(
        rest.select_dtypes(include=["object", "string", "category", "bool"]).columns
    )
    if not numeric and not categorical:
        fail("no feature column: name them with numeric or categorical")
    not_numeric = [c for c in numeric if not pd.api.types.is_numeric_dtype(data[c])]
    if not_numeric:
        fail(f"column {', '.join(not_numeric)} is not numeric; list it under categorical")
    features = numeric + categorical
    incomplete = [c for c in features + [args.target] if data[c].isna().any()]
    if incomplete:
        fail(f"column {', '.join(incomplete)} has missing values; drop those rows first (extract's filter)")

    transformer = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    try:
        featurized = transformer.fit_transform(data[features])
    except (TypeError, ValueError) as e:
        fail(f"cannot featurize: {one_line(e)}")

    scaler = transformer.named_transformers_["numeric"]
    encoder = transformer.named_transformers_["categorical"]
    # A transformer given no columns is left unfitted, hence the `if`s.
    means_and_scales = zip(scaler.mean_, scaler.scale_) if numeric else []
    categories = encoder.categories_ if categorical else []
    transform = {
        "numeric": [
            {"name": c, "mean": float(mean), "scale": float(scale)}
            for c, (mean, scale) in zip(numeric, means_and_scales)
        ],
        "categorical": [{"name": c, "categories": cats.tolist()} for c, cats in zip(categorical, categories)],
        "order": list(featurized.columns),
        "target": args.target,
        "id": args.id or None,
    }

    out = pd.concat(([data[[args.id]]] if args.id else []) + [featurized, data[[args.target]]], axis=1)
    out.to_parquet("data.parquet", index=False)
    Path("transform.json").write_text(json.dumps(transform, indent=2) + "\n")
    print(
        f"featurize: {len(numeric)} numeric, {len(categorical)} categorical columns -> "
        f"{len(transform['order'])} features, {len(out)} rows"
    )


if __name__ == "__main__":
    main()
