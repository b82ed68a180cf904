"""The audit's SQL check of a reading (``row_ok``) against the Python check it stands for.

``row_ok`` rebuilds each envelope's msgpack headers from the columns in DuckDB, for
every size class msgpack has (topics under 32, 256 and 65,536 bytes, receive times of
1 to 9 bytes, payloads under and over 256 bytes), and compares the JSON payload's fields
with the columns. When it says True the row must be consistent; when it says False or
NULL, Python (:func:`gateway.audit_rows._consistent`) looks again, so a wrong False
only costs time, but a wrong True would hide an edit. Rows here are written with
DuckDB into a real store file, then one column is changed or none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit_rows import _READING_COLUMNS, _consistent
from gateway.audit_sql import READING_SQL
from gateway.store import Store
from ledger import hash_leaf
from ledger.envelope import envelope_bytes

NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
# Every msgpack unsigned-integer size class, and their edges.
RECEIVED = st.one_of(
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]),
    st.integers(0, 2**63 - 1),
)
FLOATS = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False))
# Which column to change after the row is written, and to what (None: leave it).
EDITS: dict[str, Any] = {
    "salt": bytes(16),
    "topic": "sensors/elsewhere/temperature",
    "received_ns": 12345,
    "device_id": "someone-else",
    "kind": "location",
    "seq": 10**9,
    "ts_ms": 7,
    "asset_id": "SHIP-999",
    "celsius": -273.0,
    "lat": 1.5,
}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "store.duckdb"
    Store.open(path).close()
    return path


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    device_id, kind = draw(NAMES), draw(st.sampled_from(["temperature", "location"]))
    # Topic lengths from about 10 to 300 bytes: the fixstr, str8 and str16 headers.
    prefix = draw(st.sampled_from(["s", "sensors", "a/" * 20, "site/" * 50]))
    document: dict[str, Any] = {
        "seq": draw(st.integers(0, 2**40)),
        "ts": draw(st.integers(0, 2**45)),
        "asset_id": draw(st.one_of(st.none(), NAMES, st.text("X", min_size=250, max_size=300))),
    }
    if draw(st.booleans()):
        document["device_id"] = device_id
    columns: dict[str, Any] = {"celsius": None, "lat": None, "lon": None}
    for name in ("celsius",) if kind == "temperature" else ("lat", "lon"):
        columns[name] = document[name] = draw(FLOATS.filter(lambda v: v is not None))
    return {
        "device_id": device_id,
        "kind": kind,
        "topic": f"{prefix}/{device_id}/{kind}",
        "received_ns": draw(RECEIVED),
        "salt": draw(st.binary(min_size=16, max_size=16)),
        "payload": json.dumps(document).encode(),
        "seq": document["seq"],
        "ts_ms": document["ts"],
        "asset_id": document["asset_id"],
        **columns,
    }


def _write(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    envelope = envelope_bytes(row["topic"], row["payload"], row["received_ns"], row["salt"])
    con.execute("DELETE FROM readings")
    con.execute(
        "INSERT INTO readings (block_height, leaf_index, kind, device_id, seq, ts_ms, "
        "received_ns, topic, asset_id, celsius, lat, lon, payload_format, dedup_key, salt, "
        "envelope, leaf_hash) VALUES (0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'json', 'k', ?, ?, ?)",
        [
            row["kind"],
            row["device_id"],
            row["seq"],
            row["ts_ms"],
            row["received_ns"],
            row["topic"],
            row["asset_id"],
            row["celsius"],
            row["lat"],
            row["lon"],
            row["salt"],
            envelope,
            hash_leaf(envelope),
        ],
    )


@settings(max_examples=300, deadline=None)
@given(row=readings(), edit=st.sampled_from([None, *EDITS]))
def test_row_ok_is_true_only_for_a_consistent_row(
    store_path: Path, row: dict[str, Any], edit: str | None
) -> None:
    con = duckdb.connect(str(store_path))
    try:
        _write(con, row)
        if edit is not None:
            con.execute(f"UPDATE readings SET {edit} = ?", [EDITS[edit]])
        result = con.execute(f"SELECT row_ok FROM ({READING_SQL})", [0, 1]).fetchall()
        full = con.execute(f"SELECT {_READING_COLUMNS} FROM readings").fetchone()
    finally:
        con.close()
    assert full is not None
    (row_ok,) = result[0]
    consistent = _consistent(tuple(bytes(v) if isinstance(v, bytearray) else v for v in full))
    if row_ok:
        assert consistent
    if edit is None:
        # Every row the gateway could write is cleared in SQL, whatever its sizes.
        assert row_ok is True
