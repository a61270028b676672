"""extract: read a table, keep some rows (a pandas query or DuckDB SQL) and columns, write Parquet.

    python extract.py --input iris.csv --filter "petal_length > 2" --columns species,petal_length
    python extract.py --input iris.csv --sql "SELECT species, avg(petal_length) AS mean FROM data GROUP BY 1"

Writes data.parquet in the working directory and the value `rows` to $PETRI_OUTPUTS/rows.
"""

import argparse
import os
import sys
from pathlib import Path

import duckdb
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
    parser.add_argument("--input", required=True)
    parser.add_argument("--filter", default="")
    parser.add_argument("--sql", default="")
    parser.add_argument("--columns", default="")
    args = parser.parse_args()
    if args.filter.strip() and args.sql.strip():
        fail("give either filter or sql, not both")

    data = read_table(args.input)
    if args.filter.strip():
        try:
            data = data.query(args.filter)
        except Exception as e:
            fail(f"filter {args.filter!r}: {one_line(e)} (columns: {', '.join(map(str, data.columns))})")
    elif args.sql.strip():
        try:
            con = duckdb.connect()
            con.register("data", data)
            data = con.sql(args.sql).df()
        except duckdb.Error as e:
            # DuckDB's message ends with the query and a caret under the mistake: keep the sentence.
            fail(f"sql: {one_line(str(e).split('LINE ')[0])}")

    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if columns:
        missing = [c for c in columns if c not in data.columns]
        if missing:
            fail(f"no column {', '.join(missing)}; the table has: {', '.join(map(str, data.columns))}")
        data = data[columns]

    if len(data) == 0:
        fail("the selection is empty: no row is left")
    data.to_parquet("data.parquet", index=False)
    set_output("rows", len(data))
    print(f"extract: {len(data)} rows, {len(data.columns)} columns -> data.parquet")


if __name__ == "__main__":
    main()
