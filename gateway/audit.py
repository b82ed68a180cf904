"""``anchorgate audit``: re-verify a whole store, streaming, and name every problem.

The audit walks the blocks table and the readings table side by side in height order
(two streamed queries merged, one block's readings in memory at a time) and checks:

- every header against the chain (signature, height, previous hash, block log root,
  time order: ``ledger.ChainVerifier``), the stored block hash against the header,
  the stored header columns against the header, and the stored chain head after each
  block and in ``meta``;
- every reading's envelope against its leaf hash, its salt, topic and receive-time
  columns against the envelope, and its parsed columns against the envelope's payload;
- every block's leaf indexes (0..leaf_count-1, no gap, no repeat) and its batch root;
- readings whose block does not exist, and leaves stored in two places.

Problems are collected, not raised: the report names table, row, block and reason
for each one, and the audit goes on past them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.decode import parse_payload
from gateway.errors import DecodeError
from gateway.reader import StoreReader
from ledger import (
    ChainError,
    ChainHead,
    ChainVerifier,
    Envelope,
    FormatError,
    MerkleTree,
    PublicKey,
    block_hash,
    hash_leaf,
)
from ledger.header import BlockHeader

MAX_PROBLEMS = 1000

_BLOCK_SQL = (
    "SELECT height, block_hash, prev_hash, batch_root, leaf_count, first_received_ns, "
    "last_received_ns, created_ns, key_id, header, signature, head_after "
    "FROM blocks ORDER BY height"
)
_READING_COLUMNS = (
    "block_height, leaf_index, kind, device_id, seq, ts_ms, received_ns, topic, asset_id, "
    "celsius, lat, lon, alt_m, speed_mps, accuracy_m, salt, envelope, leaf_hash"
)
_READING_SQL = f"SELECT {_READING_COLUMNS} FROM readings ORDER BY block_height, leaf_index"
_PAYLOAD_FLOATS = ("celsius", "lat", "lon", "alt_m", "speed_mps", "accuracy_m")


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


def _check_reading(row: tuple[Any, ...], report: AuditReport) -> bytes | None:
    """Check one reading row against its envelope; return its stored leaf hash."""
    (height, index, kind, device_id, seq, ts_ms, received_ns, topic, asset_id) = row[:9]
    floats = dict(zip(_PAYLOAD_FLOATS, row[9:15], strict=True))
    salt, envelope_bytes, leaf = (bytes(v) for v in row[15:18])
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


def _check_block_columns(row: tuple[Any, ...], header: BlockHeader, report: AuditReport) -> None:
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


class _Readings:
    """The readings stream with one row of look-ahead, grouped per block."""

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._next: tuple[Any, ...] | None = next(rows, None)

    def take(self, height: int, report: AuditReport) -> list[tuple[Any, ...]]:
        """The rows of block ``height``; rows of lower, missing blocks are reported."""
        taken = []
        while self._next is not None and self._next[0] <= height:
            row = self._next
            if row[0] < height:
                report.add(
                    "readings",
                    f"reading {row[0]}:{row[1]}",
                    row[0],
                    f"its block {row[0]} does not exist in the blocks table",
                )
            else:
                taken.append(row)
            self._next = next(self._rows, None)
        return taken

    def rest(self, report: AuditReport) -> None:
        while self._next is not None:
            row = self._next
            report.add(
                "readings",
                f"reading {row[0]}:{row[1]}",
                row[0],
                f"its block {row[0]} does not exist in the blocks table",
            )
            self._next = next(self._rows, None)


def audit_store(
    reader: StoreReader,
    key: PublicKey,
    *,
    trusted_head: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Check everything in the store against the trusted gateway key.

    ``trusted_head`` is a block hash the auditor saw earlier (a checkpoint, the head of
    an earlier bundle): the store's chain must still contain it, which is how a
    rolled-back tail is caught.
    """
    report = AuditReport()
    if trusted_head is not None:
        found = reader.one("SELECT height FROM blocks WHERE block_hash = ? LIMIT 1", [trusted_head])
        if found is None:
            report.add(
                "blocks",
                f"head {trusted_head.hex()[:16]}",
                None,
                f"the trusted head {trusted_head.hex()} is not in this store: blocks were "
                "removed or the chain was replaced",
            )
    stored_key = reader.meta("key_id")
    if stored_key is not None and stored_key != key.key_id:
        report.add(
            "meta",
            "key_id",
            None,
            f"the store was signed by key {stored_key.hex()[:16]}, not the trusted key "
            f"{key.key_id.hex()[:16]}",
        )
    gateway = reader.meta("gateway_id")
    total_row = reader.one("SELECT count(*) FROM blocks")
    total = int(total_row[0]) if total_row else 0
    verifier = ChainVerifier({key.key_id: key}, gateway.decode() if gateway else None)
    readings = _Readings(reader.stream(_READING_SQL))
    for row in reader.stream(_BLOCK_SQL):
        height = int(row[0])
        header_bytes, signature, head_after = bytes(row[9]), bytes(row[10]), bytes(row[11])
        header: BlockHeader | None
        try:
            header = verifier.feed(header_bytes, signature)
        except ChainError as exc:
            report.add("blocks", f"height {height}", height, f"{exc.reason}: {exc}")
            header = _resync(verifier, header_bytes, head_after)
        else:
            if head_after != verifier.head.to_bytes():
                report.add("blocks", f"height {height}", height, "stored chain head is wrong")
        rows = readings.take(height, report)
        if header is not None:
            _check_block_columns(row, header, report)
            _check_batch(height, header, rows, report)
        report.blocks += 1
        report.readings += len(rows)
        if progress is not None:
            progress(report.blocks, total)
    readings.rest(report)
    stored_head = reader.meta("chain_head")
    if report.blocks and stored_head != verifier.head.to_bytes():
        report.add("meta", "chain_head", None, "meta chain_head does not follow from the blocks")
    for leaf, count in reader.all(
        "SELECT leaf_hash, count(*) FROM readings GROUP BY leaf_hash HAVING count(*) > 1 LIMIT 100"
    ):
        report.add(
            "readings",
            f"leaf {bytes(leaf).hex()[:16]}",
            None,
            f"the same leaf is stored {count} times",
        )
    report.head_height = verifier.head.height - 1 if verifier.head.height else None
    report.head_hash = verifier.head.prev_hash if verifier.head.height else None
    return report


def _resync(verifier: ChainVerifier, header_bytes: bytes, head_after: bytes) -> BlockHeader | None:
    """After a broken link, continue from the block's stored chain head.

    One bad block is then one problem, and the blocks after it are still checked
    against each other. Returns the header if it decodes at all.
    """
    # If the stored head is unreadable too, keep the verifier's own head: later links
    # will then be reported as well.
    with contextlib.suppress(FormatError):
        verifier.head = ChainHead.from_bytes(head_after)
    try:
        return BlockHeader.from_bytes(header_bytes)
    except FormatError:
        return None


def _check_batch(
    height: int, header: BlockHeader, rows: list[tuple[Any, ...]], report: AuditReport
) -> None:
    indexes = [int(r[1]) for r in rows]
    if indexes != list(range(len(rows))):
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
    if len(rows) != header.leaf_count:
        report.add(
            "readings",
            f"block {height}",
            height,
            f"{len(rows)} readings stored, the signed header says {header.leaf_count}",
        )
    leaves = [_check_reading(r, report) for r in rows]
    if MerkleTree([leaf for leaf in leaves if leaf is not None]).root != header.batch_root:
        report.add(
            "readings", f"block {height}", height, "the block's readings do not hash to its root"
        )


def _short(values: list[int]) -> str:
    text = ", ".join(map(str, values[:10]))
    return text + (f" and {len(values) - 10} more" if len(values) > 10 else "")
