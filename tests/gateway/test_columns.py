"""Column batches reach DuckDB exactly: every value that goes in comes back equal."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.columns import Columns, from_rows, insert_statement, row_count, to_document

COLUMNS: Columns = (
    ("n", "BIGINT"),
    ("i", "INTEGER"),
    ("x", "DOUBLE"),
    ("s", "VARCHAR"),
    ("b", "BLOB"),
)
ROW = st.fixed_dictionaries(
    {
        "n": st.none() | st.integers(-(2**63), 2**63 - 1),
        "i": st.none() | st.integers(-(2**31), 2**31 - 1),
        "x": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "s": st.none() | st.text(st.characters(exclude_categories=["Cs"])),
        "b": st.none() | st.binary(max_size=300),
    }
)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "columns.duckdb"))
    con.execute("CREATE TABLE t (k INTEGER, n BIGINT, i INTEGER, x DOUBLE, s VARCHAR, b BLOB)")
    return con


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=40))
def test_every_value_round_trips(
    con: duckdb.DuckDBPyConnection, rows: list[dict[str, object]]
) -> None:
    con.execute("DELETE FROM t")
    columns: Columns = (("k", "INTEGER"), *COLUMNS)
    keyed = [{"k": k, **row} for k, row in enumerate(rows)]
    data = from_rows(columns, keyed)
    assert row_count(columns, data) == len(rows)
    con.execute(insert_statement("t", columns), [to_document(columns, data)])
    back = con.execute("SELECT n, i, x, s, b FROM t ORDER BY k").fetchall()
    assert back == [(r["n"], r["i"], r["x"], r["s"], r["b"]) for r in rows]


def test_negative_zero_and_extreme_floats_keep_their_bits(con: duckdb.DuckDBPyConnection) -> None:
    values = [-0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]
    data: dict[str, list[object]] = {"k": list(range(4)), "x": list(values)}
    data |= {name: [None] * 4 for name in ("n", "i", "s", "b")}
    columns: Columns = (("k", "INTEGER"), *COLUMNS)
    con.execute(insert_statement("t", columns), [to_document(columns, data)])
    back = [row[0] for row in con.execute("SELECT x FROM t ORDER BY k").fetchall()]
    assert [v.hex() for v in back] == [v.hex() for v in values]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"n": [1], "i": [1], "x": [1.0], "s": ["a"]}, "'b' is missing", id="missing"),
        pytest.param(
            {"n": [1], "i": [1], "x": [1.0], "s": ["a"], "b": [b""], "z": [1]},
            "unknown column",
            id="unknown",
        ),
        pytest.param(
            {"n": [1, 2], "i": [1], "x": [1.0], "s": ["a"], "b": [b""]},
            "different lengths",
            id="ragged",
        ),
    ],
)
def test_a_malformed_batch_is_named(data: dict[str, list[object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        row_count(COLUMNS, data)


def test_a_value_that_json_cannot_carry_exactly_is_refused() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        to_document(COLUMNS, {"n": [1], "i": [1], "x": [float("nan")], "s": ["a"], "b": [b""]})


def test_derived_columns_take_the_row_position_parameters_and_other_columns(
    con: duckdb.DuckDBPyConnection,
) -> None:
    columns: Columns = (("s", "VARCHAR"), ("b", "BLOB"))
    derived: Columns = (("k", "row_index"), ("n", "$2"), ("i", "octet_length(b)"))
    blobs = [bytes(range(n)) for n in (3, 0, 7)]
    data: dict[str, list[object]] = {"s": ["a", None, "c"], "b": list(blobs)}
    con.execute(insert_statement("t", columns, derived), [to_document(columns, data), 2**62])
    back = con.execute("SELECT k, n, i, s, b FROM t ORDER BY k").fetchall()
    assert back == [
        (0, 2**62, 3, "a", blobs[0]),
        (1, 2**62, 0, None, b""),
        (2, 2**62, 7, "c", blobs[2]),
    ]


def test_the_stored_salt_is_the_envelopes(tmp_path: Path) -> None:
    # READINGS_DERIVED takes the salt from bytes 5-20 of the envelope: check it on the
    # envelope the ledger makes.
    from gateway.schema import READINGS_DERIVED
    from ledger.envelope import envelope_bytes

    salt = bytes(range(100, 116))
    envelope = envelope_bytes("sensors/d-1/temperature", b'{"ts":1}', 2**63, salt)
    expression = dict(READINGS_DERIVED)["salt"]
    con = duckdb.connect()
    got = con.execute(f"SELECT {expression} FROM (SELECT ?::BLOB AS envelope)", [envelope])
    assert got.fetchall() == [(salt,)]
