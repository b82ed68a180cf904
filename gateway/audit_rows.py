"""The audit's per-row and per-block checks, and the SQL that does most of them.

:data:`BLOCK_READINGS_SQL` gives one row per block: how many readings, whether their
leaf indexes are in order, their stored leaf hashes in leaf order, and the leaf
indexes of the readings that DuckDB found wrong or could not judge
(:data:`READING_SQL`: the leaf hash, the envelope against the stored columns and a JSON
payload against the parsed columns). :func:`check_batch` takes that row, checks the
leaf indexes and the batch root, and looks closer (in Python) only at the rows SQL
could not judge or found wrong, so that every problem is named precisely.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.compute as pc

from gateway.decode import parse_payload
from gateway.errors import DecodeError
from gateway.reader import StoreReader
from ledger import Envelope, FormatError, MerkleTree, block_hash, hash_leaf
from ledger.header import BlockHeader
from ledger.merkle import LEAF_PREFIX

MAX_PROBLEMS = 1000

BLOCK_SQL = (
    "SELECT height, block_hash, prev_hash, batch_root, leaf_count, first_received_ns, "
    "last_received_ns, created_ns, key_id, header, signature, head_after "
    "FROM blocks WHERE height >= ? AND height < ? ORDER BY height"
)
_READING_COLUMNS = (
    "block_height, leaf_index, kind, device_id, seq, ts_ms, received_ns, topic, asset_id, "
    "celsius, lat, lon, alt_m, speed_mps, accuracy_m, salt, envelope, leaf_hash"
)
# The full rows of one block's readings that need a closer look (by leaf index).
_FULL_SQL = (
    f"SELECT {_READING_COLUMNS} "
    "FROM readings WHERE block_height = ? AND list_contains(?, leaf_index) "
    "ORDER BY leaf_index"
)

# row_ok, per reading, computed by DuckDB in C++: the envelope is exactly the canonical
# msgpack of [1, salt, topic, received_ns, payload] built from the stored columns and
# the payload it holds; the topic ends in /device_id/kind; and, for a JSON payload,
# every parsed column equals the payload's field. row_ok is NULL when SQL cannot tell
# (a msgpack payload, a value no msgpack header can hold): Python checks those rows,
# and diagnoses the rows that fail. The leaf hash, SHA-256(0x00 || envelope), is
# checked by hashlib (block_groups), which on SHA instructions beats DuckDB's
# sha256, and by DuckDB only in the grouped query for readings out of order. (An
# envelope an attacker replaced, leaf hash and all, cannot match the signed batch root,
# which the walk computes from the stored leaf hashes; so these checks only have to be
# exact for the payloads the gateway accepted.)
#
# The msgpack headers are built as bytes, not as hex text: an unsigned integer cast to
# BIT is its big-endian bytes (about 0.3 us less per row than printf and unhex).
_UINT_BYTES = (
    "CASE WHEN received_ns < 0 THEN NULL "
    "WHEN received_ns < 128 THEN received_ns::UTINYINT::BIT::BLOB "
    "WHEN received_ns < 256 THEN '\\xcc'::BLOB || received_ns::UTINYINT::BIT::BLOB "
    "WHEN received_ns < 65536 THEN '\\xcd'::BLOB || received_ns::USMALLINT::BIT::BLOB "
    "WHEN received_ns < 4294967296 THEN '\\xce'::BLOB || received_ns::UINTEGER::BIT::BLOB "
    "ELSE '\\xcf'::BLOB || received_ns::UBIGINT::BIT::BLOB END"
)
_STR_HEADER = (
    "CASE WHEN tl < 32 THEN (160 + tl)::UTINYINT::BIT::BLOB "
    "WHEN tl < 256 THEN '\\xd9'::BLOB || tl::UTINYINT::BIT::BLOB "
    "WHEN tl < 65536 THEN '\\xda'::BLOB || tl::USMALLINT::BIT::BLOB END"
)
_BIN_HEADER = (
    "CASE WHEN pl < 256 THEN '\\xc4'::BLOB || pl::UTINYINT::BIT::BLOB "
    "WHEN pl < 65536 THEN '\\xc5'::BLOB || pl::USMALLINT::BIT::BLOB "
    "ELSE '\\xc6'::BLOB || pl::UINTEGER::BIT::BLOB END"
)
# One JSON parse per payload: json_transform reads every field the columns hold.
_JSON_SHAPE = (
    '{"device_id": "VARCHAR", "seq": "BIGINT", "ts": "BIGINT", "asset_id": "VARCHAR", '
    '"celsius": "DOUBLE", "lat": "DOUBLE", "lon": "DOUBLE", "alt_m": "DOUBLE", '
    '"speed_mps": "DOUBLE", "accuracy_m": "DOUBLE"}'
)
_JSON_FIELDS_OK = " AND ".join(
    [
        "j IS NOT NULL",
        "coalesce(j.device_id, device_id) = device_id",
        "j.seq IS NOT DISTINCT FROM seq",
        "j.ts IS NOT DISTINCT FROM ts_ms",
        "j.asset_id IS NOT DISTINCT FROM asset_id",
        *(
            f"j.{name} IS NOT DISTINCT FROM {name}"
            for name in ("celsius", "lat", "lon", "alt_m", "speed_mps", "accuracy_m")
        ),
    ]
)
READING_SQL = f"""
WITH r AS (
    SELECT *, encode(topic) AS topic_b, octet_length(encode(topic)) AS tl
    FROM readings WHERE block_height >= ? AND block_height < ?
), p AS (
    SELECT *, '\\x95\\x01\\xc4\\x10'::BLOB || salt || {_STR_HEADER} || topic_b
        || {_UINT_BYTES} AS prefix
    FROM r
), q AS (
    SELECT *, octet_length(prefix) AS n, octet_length(envelope) AS total,
        envelope[octet_length(prefix) + 1:octet_length(prefix) + 1] AS tag
    FROM p
), t AS (
    SELECT *, envelope[n + CASE tag WHEN '\\xc4'::BLOB THEN 3 WHEN '\\xc5'::BLOB THEN 4
        WHEN '\\xc6'::BLOB THEN 6 ELSE 1 END:total] AS payload
    FROM q
), u AS (
    SELECT *, octet_length(payload) AS pl,
        TRY(json_transform(decode(payload), '{_JSON_SHAPE}')) AS j
    FROM t
)
SELECT block_height, leaf_index, envelope, leaf_hash,
    envelope = prefix || {_BIN_HEADER} || payload
    AND ends_with(topic, '/' || device_id || '/' || kind)
    AND CASE WHEN payload[1:1] = '{{'::BLOB THEN {_JSON_FIELDS_OK} ELSE NULL END
    AS row_ok
FROM u
"""
# One row per block, in height order: how many readings, whether their leaf indexes are
# exactly 0..n-1, the leaf hashes in leaf order, and the indexes of the readings that
# failed a check or that SQL was unsure of.
BLOCK_READINGS_SQL = f"""
SELECT block_height, count(*) AS n,
    count(*) = count(DISTINCT leaf_index) AND min(leaf_index) = 0
        AND max(leaf_index) = count(*) - 1 AS in_order,
    list(leaf_hash ORDER BY leaf_index) AS leaves,
    list(leaf_index ORDER BY leaf_index) FILTER (
        WHERE (row_ok AND unhex(sha256('\\x00'::BLOB || envelope)) = leaf_hash) IS NOT TRUE
    ) AS unsure
FROM ({READING_SQL}) GROUP BY block_height ORDER BY block_height
"""


def block_groups(reader: StoreReader, low: int, high: int) -> list[tuple[Any, ...]]:
    """The rows of :data:`BLOCK_READINGS_SQL` for the heights [low, high).

    Readings lie in the file in the order the gateway wrote them: block by block, each
    block's in leaf order. Then the groups come from one scan of :data:`READING_SQL`,
    cut into blocks on Arrow columns (:func:`cut_groups`), with no grouping or sorting
    in DuckDB (about 0.3 us less per reading). Any other order (rows deleted and
    inserted again, leaf indexes edited) is left to the grouped query, which sorts.
    """
    groups = cut_groups(reader.table(READING_SQL, [low, high]))
    return reader.all(BLOCK_READINGS_SQL, [low, high]) if groups is None else groups


def cut_groups(table: pa.Table) -> list[tuple[Any, ...]] | None:
    """:data:`READING_SQL` rows cut into per-block groups; None if not in written order.

    The leaf hashes are checked here, with hashlib, and failures join the unsure rows.
    """
    rows = table.num_rows
    if not rows:
        return []
    heights = table.column("block_height").combine_chunks()
    indexes = pc.cast(table.column("leaf_index").combine_chunks(), pa.int64())
    height_step = pc.pairwise_diff(heights)  # [null, h1 - h0, h2 - h1, ...]
    # Every row either follows the one before in the same block or starts a later block
    # at leaf 0.
    tidy = pc.or_(
        pc.and_(pc.equal(height_step, 0), pc.equal(pc.pairwise_diff(indexes), 1)),
        pc.and_(pc.greater(height_step, 0), pc.equal(indexes, 0)),
    )
    if indexes[0].as_py() != 0 or not pc.all(tidy.slice(1)).as_py():
        return None
    starts: list[int] = pc.indices_nonzero(
        pc.fill_null(pc.not_equal(height_step, 0), True)
    ).to_pylist()
    ends = [*starts[1:], rows]
    leaves = table.column("leaf_hash").to_pylist()
    sha, prefix = hashlib.sha256, LEAF_PREFIX
    hashes = [sha(prefix + envelope).digest() for envelope in table.column("envelope").to_pylist()]
    bad = pc.invert(pc.fill_null(table.column("row_ok"), False))
    if hashes != leaves:
        bad = pc.or_(bad, pc.not_equal(pa.array(hashes, pa.binary()), table.column("leaf_hash")))
    unsure: dict[int, list[int]] = {}
    for position in pc.indices_nonzero(bad).to_pylist():
        block = bisect.bisect_right(starts, position) - 1
        unsure.setdefault(block, []).append(position - starts[block])
    return [
        (height, end - start, True, leaves[start:end], unsure.get(block))
        for block, (height, start, end) in enumerate(
            zip(pc.take(heights, starts).to_pylist(), starts, ends, strict=True)
        )
    ]


_PAYLOAD_FLOATS = ("celsius", "lat", "lon", "alt_m", "speed_mps", "accuracy_m")
_json_decode = json.JSONDecoder().decode


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in the store."""

    table: str
    row: str  # which row: "height 12", "reading 12:3"
    block: int | None
    reason: str


@dataclass
class AuditReport:
    """What the audit checked and what it found."""

    blocks: int = 0
    readings: int = 0
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False
    head_height: int | None = None
    head_hash: bytes | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, table: str, row: str, block: int | None, reason: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.truncated = True
            return
        self.problems.append(Problem(table, row, block, reason))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "blocks_checked": self.blocks,
            "readings_checked": self.readings,
            "head_height": self.head_height,
            "head_hash": None if self.head_hash is None else self.head_hash.hex(),
            "problems": [
                {"table": p.table, "row": p.row, "block": p.block, "reason": p.reason}
                for p in self.problems
            ],
            "problems_truncated": self.truncated,
        }


def _same(stored: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(stored, float):
        return stored == expected or (math.isnan(stored) and math.isnan(expected))
    return bool(stored == expected)


def _consistent(row: tuple[Any, ...]) -> bool:
    """The fast path: True when the row is consistent with its envelope and payload.

    Only when it says no does :func:`_check_reading` work out, slowly, what is wrong.
    """
    (_, _, kind, device_id, seq, ts_ms, received_ns, topic, asset_id) = row[:9]
    if hash_leaf(row[16]) != row[17]:
        return False
    try:
        version, salt, env_topic, env_received, payload = _unpackb(row[16])
        is_json = payload[:1] == b"{"
        document = _json_decode(payload.decode()) if is_json else _unpackb(payload)
        get = document.get
        consistent: bool = (
            version == 1
            and salt == row[15]
            and env_topic == topic
            and env_received == received_ns
            and get("device_id", device_id) == device_id
            and get("seq") == seq
            and get("ts") == ts_ms
            and get("asset_id") == asset_id
            and get("celsius") == row[9]
            and get("lat") == row[10]
            and get("lon") == row[11]
            and get("alt_m") == row[12]
            and get("speed_mps") == row[13]
            and get("accuracy_m") == row[14]
            and topic.endswith(f"/{device_id}/{kind}")
        )
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return False  # msgpack's and json's errors are ValueErrors
    return consistent


def _check_reading(row: tuple[Any, ...], report: AuditReport) -> bytes | None:
    """Check one reading row against its envelope; return its stored leaf hash."""
    (height, index, kind, device_id, seq, ts_ms, received_ns, topic, asset_id) = row[:9]
    floats = dict(zip(_PAYLOAD_FLOATS, row[9:15], strict=True))
    salt, envelope_bytes, leaf = (bytes(v) for v in row[15:18])
    # Diagnose: which of the things the fast path checks is wrong?
    where = f"reading {height}:{index}"
    if hash_leaf(envelope_bytes) != leaf:
        report.add("readings", where, height, "envelope does not match its leaf hash (edited)")
        return leaf
    try:
        envelope = Envelope.from_bytes(envelope_bytes)
    except FormatError as exc:
        report.add("readings", where, height, f"envelope unreadable: {exc}")
        return leaf
    for name, column, from_envelope in (
        ("salt", salt, envelope.salt),
        ("topic", topic, envelope.topic),
        ("received_ns", received_ns, envelope.received_ns),
    ):
        if column != from_envelope:
            report.add("readings", where, height, f"column {name} differs from the envelope")
    try:
        payload, _ = parse_payload(envelope.payload)
    except DecodeError as exc:
        report.add("readings", where, height, f"anchored payload unreadable: {exc}")
        return leaf
    expected_columns: dict[str, Any] = {
        "device_id": payload.get("device_id", device_id),
        "seq": payload.get("seq"),
        "ts_ms": payload.get("ts"),
        "asset_id": payload.get("asset_id"),
        **{name: payload.get(name) for name in _PAYLOAD_FLOATS},
    }
    stored_columns: dict[str, Any] = {
        "device_id": device_id,
        "seq": seq,
        "ts_ms": ts_ms,
        "asset_id": asset_id,
        **floats,
    }
    for name, value in expected_columns.items():
        stored = stored_columns[name]
        expected = float(value) if isinstance(value, int) and isinstance(stored, float) else value
        if not _same(stored, expected):
            report.add(
                "readings",
                where,
                height,
                f"column {name} = {stored!r} but the anchored payload says {expected!r}",
            )
    if f"/{device_id}/" not in f"/{envelope.topic}/" or f"/{kind}" not in envelope.topic:
        report.add("readings", where, height, "device_id or kind differs from the topic")
    return leaf


def check_block_columns(row: tuple[Any, ...], header: BlockHeader, report: AuditReport) -> None:
    height = row[0]
    expected = (
        header.height,
        block_hash(bytes(row[9])),
        header.prev_hash,
        header.batch_root,
        header.leaf_count,
        header.first_received_ns,
        header.last_received_ns,
        header.created_ns,
        header.key_id,
    )
    names = (
        "height",
        "block_hash",
        "prev_hash",
        "batch_root",
        "leaf_count",
        "first_received_ns",
        "last_received_ns",
        "created_ns",
        "key_id",
    )
    for name, column, value in zip(names, row[:9], expected, strict=True):
        stored = bytes(column) if isinstance(column, bytes | bytearray | memoryview) else column
        if stored != value:
            report.add(
                "blocks", f"height {height}", height, f"column {name} differs from the header"
            )


def check_batch(
    reader: StoreReader,
    height: int,
    header: BlockHeader,
    group: tuple[Any, ...],
    report: AuditReport,
) -> None:
    """Check one block's readings, given its row of :data:`BLOCK_READINGS_SQL`."""
    _, count, in_order, leaves, unsure = group
    if not in_order:
        indexes = [
            int(i)
            for (i,) in reader.all(
                "SELECT leaf_index FROM readings WHERE block_height = ? ORDER BY leaf_index",
                [height],
            )
        ]
        missing = sorted(set(range(header.leaf_count)) - set(indexes))
        repeated = sorted({i for i in indexes if indexes.count(i) > 1})
        detail = []
        if missing:
            detail.append(f"missing leaf indexes {_short(missing)}")
        if repeated:
            detail.append(f"repeated leaf indexes {_short(repeated)}")
        extra = sorted(i for i in set(indexes) if i >= header.leaf_count)
        if extra:
            detail.append(f"leaf indexes past the leaf count {_short(extra)}")
        report.add("readings", f"block {height}", height, "; ".join(detail) or "leaf order")
    if count != header.leaf_count:
        report.add(
            "readings",
            f"block {height}",
            height,
            f"{count} readings stored, the signed header says {header.leaf_count}",
        )
    if unsure:
        for full in reader.all(_FULL_SQL, [height, sorted(set(unsure))]):
            if not _consistent(full):
                _check_reading(full, report)
    try:
        root = MerkleTree(leaves).root
    except FormatError:
        root = None  # a stored leaf hash of the wrong size, reported above
    if root != header.batch_root:
        report.add(
            "readings", f"block {height}", height, "the block's readings do not hash to its root"
        )


def _short(values: list[int]) -> str:
    text = ", ".join(map(str, values[:10]))
    return text + (f" and {len(values) - 10} more" if len(values) > 10 else "")
