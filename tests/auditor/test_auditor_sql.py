"""The audit's SQL check of a reading (``row_ok``) against the Python check it stands for.

``row_ok`` rebuilds each envelope's msgpack headers from the columns in DuckDB, for
every size class msgpack has (topics under 32, 256 and 65,536 bytes, receive times of
1 to 9 bytes, payloads under and over 256 bytes), and compares the JSON payload's fields
with the columns: by parsing it (``READING_SQL``), or first by comparing it with the
columns rendered in the reference layout (``REFERENCE_READING_SQL``). When it says True
the row must be consistent; when it says False or NULL, Python
(:func:`gateway.audit_rows._consistent`) looks again, so a wrong False only costs time,
but a wrong True would hide an edit. Rows here are written with DuckDB into a real
store file, then one column is changed or none.
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
from gateway.audit_sql import READING_SQL, REFERENCE_READING_SQL, reference_share
from gateway.reader import StoreReader
from gateway.readings import (
    ALWAYS_WRITTEN,
    KINDS,
    PAYLOAD_FIELDS,
    LocationReading,
    TemperatureReading,
    encode_payload,
    encode_reading,
    topic_for,
)
from gateway.store import Store
from ledger import hash_leaf
from ledger.envelope import envelope_bytes

NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
# Asset ids with what JSON escapes: a quote, a backslash, a control character, and what
# json.dumps writes as \uXXXX.
ESCAPED = st.text('ab-"\\\n\u00e9\u2603', min_size=1, max_size=8)
ASSETS = st.one_of(st.none(), NAMES, ESCAPED, st.text("X", min_size=250, max_size=300))
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
    "seq ": None,  # (the trailing space: a second edit of seq, to NULL)
}
# An edit that depends on the row: the asset id column set to the text the payload
# holds for it (its JSON escapes, unread), which only a check that reads the JSON
# tells apart from the asset id itself.
ESCAPED_ASSET = "asset_id as escaped in the payload"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "store.duckdb"
    Store.open(path).close()
    return path


@st.composite
def readings(
    draw: st.DrawFn, assets: st.SearchStrategy[str | None] = ASSETS, reference: bool | None = None
) -> dict[str, Any]:
    device_id, kind = draw(NAMES), draw(st.sampled_from(KINDS))
    # Topic lengths from about 10 to 300 bytes: the fixstr, str8 and str16 headers.
    prefix = draw(st.sampled_from(["s", "sensors", "a/" * 20, "site/" * 50]))
    document: dict[str, Any] = {
        "seq": draw(st.integers(0, 2**40)),
        "ts": draw(st.integers(0, 2**45)),
        "asset_id": draw(assets),
    }
    if draw(st.booleans()):
        document["device_id"] = device_id
    columns: dict[str, Any] = {"celsius": None, "lat": None, "lon": None}
    for name in ("celsius",) if kind == "temperature" else ("lat", "lon"):
        columns[name] = document[name] = draw(FLOATS.filter(lambda v: v is not None))
    if draw(st.booleans()) if reference is None else reference:  # as the simulators send
        ordered = {n: document[n] for n in PAYLOAD_FIELDS[kind] if document.get(n) is not None}
        payload = encode_payload(ordered)
    else:
        payload = json.dumps(document).encode()
    return {
        "device_id": device_id,
        "kind": kind,
        "topic": f"{prefix}/{device_id}/{kind}",
        "received_ns": draw(RECEIVED),
        "salt": draw(st.binary(min_size=16, max_size=16)),
        "payload": payload,
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
        "received_ns, topic, asset_id, celsius, lat, lon, alt_m, speed_mps, accuracy_m, "
        "payload_format, dedup_key, salt, envelope, leaf_hash) "
        "VALUES (0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'json', 'k', ?, ?, ?)",
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
            row.get("alt_m"),
            row.get("speed_mps"),
            row.get("accuracy_m"),
            row["salt"],
            envelope,
            hash_leaf(envelope),
        ],
    )


def _edit(con: duckdb.DuckDBPyConnection, row: dict[str, Any], edit: str) -> None:
    if edit == ESCAPED_ASSET:
        escaped = None if row["asset_id"] is None else json.dumps(row["asset_id"])[1:-1]
        con.execute("UPDATE readings SET asset_id = ?", [escaped])
    else:
        con.execute(f"UPDATE readings SET {edit.strip()} = ?", [EDITS[edit]])


@settings(max_examples=400, deadline=None)
@given(
    row=readings(),
    edit=st.sampled_from([None, ESCAPED_ASSET, *EDITS]),
    sql=st.sampled_from([READING_SQL, REFERENCE_READING_SQL]),
)
def test_row_ok_is_true_only_for_a_consistent_row(
    store_path: Path, row: dict[str, Any], edit: str | None, sql: str
) -> None:
    _check_row_ok(store_path, row, edit, sql)


def _check_row_ok(store_path: Path, row: dict[str, Any], edit: str | None, sql: str) -> None:
    con = duckdb.connect(str(store_path))
    try:
        _write(con, row)
        if edit is not None:
            _edit(con, row, edit)
        result = con.execute(f"SELECT row_ok FROM ({sql})", [0, 1]).fetchall()
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


@settings(max_examples=100, deadline=None)
@given(row=readings(assets=ESCAPED, reference=True), edit=st.sampled_from([None, ESCAPED_ASSET]))
def test_an_escaped_string_is_read_not_compared(
    store_path: Path, row: dict[str, Any], edit: str | None
) -> None:
    # The property above, where the fast path could go wrong: a payload in the reference
    # layout whose asset id JSON escapes, and the column set to the escapes' text.
    _check_row_ok(store_path, row, edit, REFERENCE_READING_SQL)


def _reference_share(path: Path, row: dict[str, Any]) -> tuple[int, int]:
    con = duckdb.connect(str(path))
    try:
        _write(con, row)
        return reference_share(StoreReader(con, owned=False), [0])
    finally:
        con.close()


FIELD_FLOATS = st.floats(-90, 90, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    reading=st.one_of(
        st.builds(
            TemperatureReading,
            NAMES,
            st.one_of(st.none(), st.integers(0, 2**63 - 1)),
            st.integers(0, 2**53),
            st.floats(-100, 300, allow_nan=False),
            st.one_of(st.none(), NAMES),
        ),
        st.builds(
            LocationReading,
            NAMES,
            st.one_of(st.none(), st.integers(0, 2**63 - 1)),
            st.integers(0, 2**53),
            FIELD_FLOATS,
            FIELD_FLOATS,
            st.one_of(st.none(), st.floats(-500, 20000, allow_nan=False)),
            st.one_of(st.none(), st.floats(0, 350, allow_nan=False)),
            st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False)),
            st.one_of(st.none(), NAMES),
        ),
    )
)
def test_what_the_simulators_send_is_in_the_reference_layout(
    store_path: Path, reading: TemperatureReading | LocationReading
) -> None:
    # The rendering in SQL and gateway.readings.encode_reading agree byte for byte, for
    # every field a reading can leave out and every double: so the fast path is taken.
    floats = {
        name: getattr(reading, name, None)
        for name in ("celsius", "lat", "lon", "alt_m", "speed_mps", "accuracy_m")
    }
    row = {
        "device_id": reading.device_id,
        "kind": reading.kind,
        "topic": topic_for(reading.device_id, reading.kind),
        "received_ns": 1_764_000_000_000_000_000,
        "salt": bytes(16),
        "payload": encode_reading(reading),
        "seq": reading.seq,
        "ts_ms": reading.ts,
        "asset_id": reading.asset_id,
        **floats,
    }
    assert _reference_share(store_path, row) == (1, 1)


def test_always_written_fields_are_those_a_bare_reading_has() -> None:
    # The renderer leaves a NULL column of these fields as a bare key (no JSON), so they
    # must be the fields to_payload writes even when every optional one is None.
    bare: list[TemperatureReading | LocationReading] = [
        TemperatureReading("d", None, 1, 2.0),
        LocationReading("d", None, 1, 2.0, 3.0),
    ]
    for reading in bare:
        assert set(reading.to_payload()) == ALWAYS_WRITTEN[reading.kind]


def test_another_layout_is_not_taken_for_the_reference_one(store_path: Path) -> None:
    reading = TemperatureReading("reefer-1", 5, 1_764_000_000_000, 4.25, "SHIP-1")
    row = {
        "device_id": "reefer-1",
        "kind": "temperature",
        "topic": topic_for("reefer-1", "temperature"),
        "received_ns": 1_764_000_000_000_000_000,
        "salt": bytes(16),
        "payload": encode_reading(reading),
        "seq": 5,
        "ts_ms": 1_764_000_000_000,
        "asset_id": "SHIP-1",
        "celsius": 4.25,
        "lat": None,
        "lon": None,
    }
    assert _reference_share(store_path, row) == (1, 1)
    spaced = json.dumps(reading.to_payload()).encode()  # ", " and ": "
    assert _reference_share(store_path, {**row, "payload": spaced}) == (0, 1)
    escaped = encode_reading(reading).replace(b"SHIP-1", b"SHIP\\u002d1")
    assert json.loads(escaped)["asset_id"] == "SHIP-1"
    assert _reference_share(store_path, {**row, "payload": escaped}) == (0, 1)
    # The asset id column edited to the escape's text: rendered unread, it would equal
    # the payload's bytes. A backslash in a string column rules the fast path out.
    edited = {**row, "payload": escaped, "asset_id": "SHIP\\u002d1"}
    assert _reference_share(store_path, edited) == (0, 1)
