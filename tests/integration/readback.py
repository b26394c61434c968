"""Reads a rosterflow export back the way analysts do, with DuckDB and pyarrow, and prints what
it found as JSON for tests/integration/export.rs to check.

    python3 readback.py DIR            every dataset under DIR: files, types, rows, Parquet metadata
    python3 readback.py DIR --sql SQL  rows of a DuckDB query over views `growth`, `roster_history`

Timestamps come out as microseconds since the epoch (UTC), so nothing depends on time zones.
"""

import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATASETS = ["growth", "roster_history"]


def connect(root):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for dataset in DATASETS:
        if os.path.isdir(os.path.join(root, dataset)):
            pattern = os.path.join(root, dataset, "**", "*.parquet")
            con.execute(
                f"CREATE VIEW {dataset} AS SELECT * FROM "
                f"read_parquet('{pattern}', hive_partitioning = true)"
            )
    return con


def query(con, sql):
    """Rows of `sql` as dicts, timestamps as epoch microseconds."""
    described = con.execute(f"DESCRIBE {sql}").fetchall()
    columns = [
        f'epoch_us("{name}") AS "{name}"' if kind.startswith("TIMESTAMP") else f'"{name}"'
        for name, kind, *_ in described
    ]
    cursor = con.execute(f"SELECT {', '.join(columns)} FROM ({sql})")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def pyarrow_rows(table):
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_timestamp(column.type):
            column = pc.cast(column, pa.int64())
        columns[name] = column.to_pylist()
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def parquet_facts(path):
    meta = pq.ParquetFile(path).metadata
    columns = {}
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for i in range(group.num_columns):
            chunk = group.column(i)
            facts = columns.setdefault(
                chunk.path_in_schema,
                {"compression": set(), "encodings": set(), "dictionary_page": True},
            )
            facts["compression"].add(chunk.compression)
            facts["encodings"].update(chunk.encodings)
            facts["dictionary_page"] &= chunk.has_dictionary_page
    return {
        "rows": meta.num_rows,
        "row_groups": meta.num_row_groups,
        "created_by": meta.created_by,
        "columns": {
            name: {
                "compression": sorted(f["compression"]),
                "encodings": sorted(f["encodings"]),
                "dictionary_page": f["dictionary_page"],
            }
            for name, f in columns.items()
        },
    }


def everything(root):
    files = sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )
    con = connect(root)
    out = {"files": files, "datasets": {}}
    for dataset in DATASETS:
        parquet = [f for f in files if f.startswith(dataset + os.sep) and f.endswith(".parquet")]
        if not parquet:
            continue
        path = os.path.join(root, parquet[0])
        table = pq.read_table(path)
        out["datasets"][dataset] = {
            "duckdb_types": {
                name: kind for name, kind, *_ in con.execute(f"DESCRIBE {dataset}").fetchall()
            },
            "duckdb_rows": query(con, f"SELECT * FROM {dataset}"),
            "pyarrow_types": {f.name: str(f.type) for f in table.schema},
            "pyarrow_rows": pyarrow_rows(table),
            "parquet": parquet_facts(path),
        }
    return out


def main():
    root = sys.argv[1]
    if len(sys.argv) > 3 and sys.argv[2] == "--sql":
        result = query(connect(root), sys.argv[3])
    else:
        result = everything(root)
    json.dump(result, sys.stdout, default=str)


if __name__ == "__main__":
    main()
