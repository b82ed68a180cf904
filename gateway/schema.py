"""The store's schema: its tables, the migrations that make them, the batch columns.

Tables (docs/GATEWAY.md describes every column):

- ``readings``: one row per anchored reading: the parsed columns for analysis, the
  leaf envelope exactly as hashed, its salt and leaf hash, the block height and the
  leaf index within the block. ``dedup_key`` recognises redelivered readings.
- ``blocks``: one row per signed block: header fields, the header bytes, signature
  and the chain head after the block (so a restart resumes without replaying).
- ``rejects``: payloads that failed validation, raw, with field and reason.
- ``alerts`` (schema version 2): thresholds broken by anchored readings
  (gateway.alerts), each referencing its reading by block height and leaf index.
- ``meta``: key/value: ``schema_version``, ``gateway_id``, ``key_id``, ``chain_head``.

Migrations: ``MIGRATIONS[n]`` holds the statements that take a store from schema
version ``n - 1`` to ``n``; :meth:`gateway.store.Store.open` applies the missing ones
in one transaction and refuses a store from a newer anchorgate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.columns import Columns

SCHEMA_VERSION = 2

_SCHEMA_V1 = (
    """CREATE TABLE meta (
        key VARCHAR PRIMARY KEY,
        value BLOB NOT NULL
    )""",
    """CREATE TABLE blocks (
        height BIGINT NOT NULL,
        block_hash BLOB NOT NULL,
        prev_hash BLOB NOT NULL,
        batch_root BLOB NOT NULL,
        leaf_count INTEGER NOT NULL,
        first_received_ns BIGINT NOT NULL,
        last_received_ns BIGINT NOT NULL,
        created_ns BIGINT NOT NULL,
        key_id BLOB NOT NULL,
        header BLOB NOT NULL,
        signature BLOB NOT NULL,
        head_after BLOB NOT NULL
    )""",
    """CREATE TABLE readings (
        block_height BIGINT NOT NULL,
        leaf_index INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        device_id VARCHAR NOT NULL,
        seq BIGINT,
        ts_ms BIGINT NOT NULL,
        received_ns BIGINT NOT NULL,
        topic VARCHAR NOT NULL,
        asset_id VARCHAR,
        celsius DOUBLE,
        lat DOUBLE,
        lon DOUBLE,
        alt_m DOUBLE,
        speed_mps DOUBLE,
        accuracy_m DOUBLE,
        payload_format VARCHAR NOT NULL,
        dedup_key VARCHAR NOT NULL,
        salt BLOB NOT NULL,
        envelope BLOB NOT NULL,
        leaf_hash BLOB NOT NULL
    )""",
    """CREATE TABLE rejects (
        received_ns BIGINT NOT NULL,
        topic VARCHAR NOT NULL,
        payload BLOB NOT NULL,
        field VARCHAR NOT NULL,
        reason VARCHAR NOT NULL
    )""",
)

# Version 2: alerts (gateway.alerts), written in the transaction of the reading's batch.
_SCHEMA_V2 = (
    """CREATE TABLE alerts (
        alert_id VARCHAR NOT NULL,
        asset_id VARCHAR NOT NULL,
        asset_kind VARCHAR,
        rule VARCHAR NOT NULL,
        device_id VARCHAR NOT NULL,
        block_height BIGINT NOT NULL,
        leaf_index INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        threshold DOUBLE NOT NULL,
        received_ns BIGINT NOT NULL,
        created_ns BIGINT NOT NULL
    )""",
)

MIGRATIONS: Mapping[int, Sequence[str]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2}

# The columns a batch inserts, with their DuckDB types, in table order.
READINGS_COLUMNS: Columns = (
    ("kind", "VARCHAR"),
    ("device_id", "VARCHAR"),
    ("seq", "BIGINT"),
    ("ts_ms", "BIGINT"),
    ("received_ns", "BIGINT"),
    ("topic", "VARCHAR"),
    ("asset_id", "VARCHAR"),
    ("celsius", "DOUBLE"),
    ("lat", "DOUBLE"),
    ("lon", "DOUBLE"),
    ("alt_m", "DOUBLE"),
    ("speed_mps", "DOUBLE"),
    ("accuracy_m", "DOUBLE"),
    ("payload_format", "VARCHAR"),
    ("dedup_key", "VARCHAR"),
    ("envelope", "BLOB"),
    ("leaf_hash", "BLOB"),
)
# The readings columns DuckDB fills in itself, each (name, SQL expression) as
# gateway.columns.insert_statement takes them: all of a batch's readings belong to
# the batch's block ($2), in batch order, and the salt is bytes 5 to 20 of the envelope
# (canonical msgpack [1, salt, ...]: 0x95 0x01, then bin 8 of 16 bytes, 0xc4 0x10;
# docs/FORMAT.md). Fewer values to encode and parse: about 1.5 us less per reading.
READINGS_DERIVED: Columns = (
    ("block_height", "$2"),
    ("leaf_index", "row_index"),
    ("salt", "envelope[5:20]"),
)
REJECTS_COLUMNS: Columns = (
    ("received_ns", "BIGINT"),
    ("topic", "VARCHAR"),
    ("payload", "BLOB"),
    ("field", "VARCHAR"),
    ("reason", "VARCHAR"),
)
ALERTS_COLUMNS: Columns = (
    ("alert_id", "VARCHAR"),
    ("asset_id", "VARCHAR"),
    ("asset_kind", "VARCHAR"),
    ("rule", "VARCHAR"),
    ("device_id", "VARCHAR"),
    ("block_height", "BIGINT"),
    ("leaf_index", "INTEGER"),
    ("kind", "VARCHAR"),
    ("value", "DOUBLE"),
    ("threshold", "DOUBLE"),
    ("received_ns", "BIGINT"),
    ("created_ns", "BIGINT"),
)


@dataclass(frozen=True, slots=True)
class BlockRow:
    """One row of the blocks table, as committed."""

    height: int
    block_hash: bytes
    prev_hash: bytes
    batch_root: bytes
    leaf_count: int
    first_received_ns: int
    last_received_ns: int
    created_ns: int
    key_id: bytes
    header: bytes
    signature: bytes
    head_after: bytes


BLOCK_COLUMNS = ", ".join(BlockRow.__slots__)
