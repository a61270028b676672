"""split: shuffle a table into train, validation and test sets, stratified on the target if given.

    python split.py --data features.parquet --target species --ratios 0.7,0.15,0.15 --seed 7

Writes train.parquet, validation.parquet and test.parquet in the working directory and the values
`train_rows`, `validation_rows` and `test_rows` to $PETRI_OUTPUTS.
"""

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split


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


def set_output(name, value):
    """Writes an output value to $PETRI_OUTPUTS/<name>, where Petri picks it up."""
    outputs = Path(os.environ.get("PETRI_OUTPUTS", "outputs"))
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / name).write_text(str(value))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--ratios", default="0.7,0.15,0.15")
    parser.add_argument("--seed", default="0")
    args = parser.parse_args()
    try:
        seed = int(float(args.seed))
    except (ValueError, OverflowError):
        fail(f"seed must be a whole number, not {args.seed!r}")
    try:
        ratios = [float(r) for r in args.ratios.split(",")]
    except ValueError:
        ratios = []
    if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
        fail(f"ratios must be three positive shares that add up to 1, like 0.7,0.15,0.15 (got {args.ratios!r})")
    train_share, validation_share, test_share = ratios

    data = read_table(args.data)
    if args.target and args.target not in data.columns:
        fail(f"no column {args.target}; the table has: {', '.join(map(str, data.columns))}")
    labels = data[args.target] if args.target else None
    try:
        # First the test set, then validation out of what is left.
        rest, test = train_test_split(data, test_size=test_share, random_state=seed, stratify=labels)
        rest_labels = rest[args.target] if args.target else None
        train, validation = train_test_split(
            rest, test_size=validation_share / (train_share + validation_share), random_state=seed, stratify=rest_labels
        )
    except ValueError as e:
        fail(f"cannot split {len(data)} rows by {args.ratios}: {one_line(e)}")

    for name, part in (("train", train), ("validation", validation), ("test", test)):
        part.to_parquet(f"{name}.parquet", index=False)
        set_output(f"{name}_rows", len(part))
    print(f"split: {len(train)} train, {len(validation)} validation, {len(test)} test rows")


if __name__ == "__main__":
    main()
