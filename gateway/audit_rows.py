"""The audit's per-row and per-block checks.

:func:`check_batch` takes a block's row of :data:`gateway.audit_sql.BLOCK_READINGS_SQL`
(how many readings, whether their leaf indexes are in order, their stored leaf hashes
in leaf order, and the leaf indexes of the readings that failed a check in SQL or that
SQL could not judge), checks the leaf indexes and the batch root, and looks closer (in
Python) only at those readings, so that every problem is named precisely.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack

from gateway.decode import parse_payload
from gateway.errors import DecodeError
from gateway.reader import StoreReader
from ledger import Envelope, FormatError, MerkleTree, block_hash, hash_leaf
from ledger.header import BlockHeader

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

# The payload fields that are DOUBLE columns, in the readings table's order.
PAYLOAD_FLOATS = ("celsius", "lat", "lon", "alt_m", "speed_mps", "accuracy_m")
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

    def extend(self, other: AuditReport) -> None:
        """Add what ``other`` checked and found (another range of the same store)."""
        self.blocks += other.blocks
        self.readings += other.readings
        for problem in other.problems:
            self.add(problem.table, problem.row, problem.block, problem.reason)
        self.truncated |= other.truncated

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
    floats = dict(zip(PAYLOAD_FLOATS, row[9:15], strict=True))
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
        **{name: payload.get(name) for name in PAYLOAD_FLOATS},
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
