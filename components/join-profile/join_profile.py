"""join-profile: add each sample's profile (one row per key in a second table) to its row.

    python join_profile.py --samples iris.csv --profile iris_profiles.csv --on sample_id --how inner

Writes data.parquet in the working directory and the values `rows` and `unmatched` (samples
that have no profile) to $PETRI_OUTPUTS.
"""

import argparse
import os
import sys
from pathlib import Path

import pandas as pd


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
    parser.add_argument("--samples", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--on", required=True)
    parser.add_argument("--how", default="inner")
    args = parser.parse_args()
    if args.how not in ("inner", "left"):
        fail(f"how must be inner or left, not {args.how!r}")

    samples = read_table(args.samples)
    profile = read_table(args.profile)
    for name, table in (("samples", samples), ("profile", profile)):
        if args.on not in table.columns:
            fail(f"the {name} table has no column {args.on!r}; it has: {', '.join(map(str, table.columns))}")

    unmatched = int((~samples[args.on].isin(profile[args.on])).sum())
    try:
        # many_to_one: a key with two profiles is an error rather than a duplicated sample.
        data = samples.merge(profile, on=args.on, how=args.how, validate="many_to_one", suffixes=("", "_profile"))
    except pd.errors.MergeError as e:
        fail(f"the profile table has a key more than once: {one_line(e)}")
    except ValueError as e:
        fail(f"cannot join on {args.on!r}: {one_line(e)}")

    if len(data) == 0:
        fail(f"no sample has a profile: no {args.on!r} is in both tables")
    data.to_parquet("data.parquet", index=False)
    set_output("rows", len(data))
    set_output("unmatched", unmatched)
    print(f"join-profile: {len(data)} rows ({args.how} join on {args.on}); {unmatched} samples without a profile")


if __name__ == "__main__":
    main()
