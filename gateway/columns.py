"""Column batches: how a batch of rows travels from Python into one DuckDB INSERT.

The writer hands DuckDB a whole batch as ONE JSON document holding one array per
column (``{"kind": [...], "salt": [...], ...}``; BLOB values base64-encoded), and
DuckDB unpacks it with ``from_json`` and ``unnest`` inside the INSERT. Two cheaper
paths were measured and refused:

- binding each value as a parameter (``executemany``, ``VALUES (?, ...)`` or one
  ``LIST`` parameter per column) converts every value to a DuckDB ``Value`` one by
  one: 1.6 to 20 times slower per row;
- an Arrow table is a little faster to insert, but importing pyarrow (and numpy
  with it) and its allocator cost the service about 40 MB of resident memory, a
  quarter of its budget on a Raspberry Pi (bench/ingest.py).

JSON carries every value exactly: Python writes the shortest repr that round-trips a
float and DuckDB reads it back correctly rounded; integers are exact to 64 bits;
strings are escaped. ``tests/gateway/test_columns.py`` checks the round trip.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

# (column name, DuckDB type) in table order.
Columns = tuple[tuple[str, str], ...]
# One list of values per column name, all of the same length.
ColumnData = Mapping[str, Sequence[Any]]

_b64 = base64.b64encode


def insert_statement(table: str, columns: Columns, derived: Columns = ()) -> str:
    """``INSERT INTO table (...) SELECT ...`` taking the batch document as parameter $1.

    ``derived`` columns are not in the document: each is (name, SQL expression), the
    expression over the document's columns by name, ``row_index`` (the row's position
    in the batch, from 0) and further parameters ($2, ...) the caller binds.
    """
    # BLOB values travel as base64 text and are decoded by from_base64.
    structure = json.dumps(
        {name: "VARCHAR[]" if kind == "BLOB" else f"{kind}[]" for name, kind in columns}
    )
    picks = ", ".join(
        f"from_base64(unnest(batch.{name})) AS {name}"
        if kind == "BLOB"
        else f"unnest(batch.{name}) AS {name}"
        for name, kind in columns
    )
    if derived:
        picks += f", unnest(range(len(batch.{columns[0][0]}))) AS row_index"
    names = ", ".join(name for name, _ in (*columns, *derived))
    values = ", ".join([name for name, _ in columns] + [expression for _, expression in derived])
    # The structure text is ours (column names and types), never a caller's value.
    quoted = structure.replace("'", "''")
    return (
        f"INSERT INTO {table} ({names}) SELECT {values} FROM (SELECT {picks} "
        f"FROM (SELECT from_json($1::JSON, '{quoted}') AS batch))"
    )


def row_count(columns: Columns, data: ColumnData) -> int:
    """The number of rows in ``data``; raises ValueError if a column is missing or short."""
    lengths = set()
    for name, _ in columns:
        if name not in data:
            raise ValueError(f"column batch: column {name!r} is missing")
        lengths.add(len(data[name]))
    extra = set(data) - {name for name, _ in columns}
    if extra:
        raise ValueError(f"column batch: unknown column(s) {', '.join(sorted(extra))}")
    if len(lengths) > 1:
        raise ValueError(f"column batch: columns have different lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def to_document(columns: Columns, data: ColumnData) -> str:
    """The JSON document :func:`insert_statement` reads: one array per column."""
    document: dict[str, list[Any]] = {}
    for name, kind in columns:
        values = data[name]
        if kind == "BLOB":
            document[name] = [None if v is None else _b64(v).decode("ascii") for v in values]
        else:
            document[name] = list(values)
    return json.dumps(document, allow_nan=False, separators=(",", ":"))


def from_rows(columns: Columns, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Row dictionaries (tests, rejects) as a column batch; missing keys are NULL."""
    return {name: [row.get(name) for row in rows] for name, _ in columns}
