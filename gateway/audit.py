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
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

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
    "FROM blocks WHERE height >= ? AND height < ? ORDER BY height"
)
_READING_COLUMNS = (
    "block_height, leaf_index, kind, device_id, seq, ts_ms, received_ns, topic, asset_id, "
    "celsius, lat, lon, alt_m, speed_mps, accuracy_m, salt, envelope, leaf_hash"
)
# The full rows of one block's readings that need a closer look (by leaf index).
_FULL_SQL = (
    f"SELECT {_READING_COLUMNS}, "
    "sha256(unhex('00') || envelope) = lower(hex(leaf_hash)) AS leaf_ok "
    "FROM readings WHERE block_height = ? AND list_contains(?, leaf_index) "
    "ORDER BY leaf_index"
)

# The walk streams one light row per reading: (block_height, leaf_index, leaf_hash,
# row_ok). DuckDB computes row_ok itself, in C++ on every core, while Python consumes:
# the leaf hash is SHA-256(0x00 || envelope); the envelope is exactly the canonical
# msgpack of [1, salt, topic, received_ns, payload] built from the stored columns and
# the payload it holds; the topic ends in /device_id/kind; and, for a JSON payload,
# every parsed column equals the payload's field. row_ok is NULL when SQL cannot tell
# (a msgpack payload): Python checks those rows, and diagnoses the rows that fail.
# (An envelope an attacker replaced, leaf hash and all, cannot match the signed batch
# root, which the walk computes from the stored leaf hashes; so these checks only have
# to be exact for the payloads the gateway accepted.)
_UINT_HEX = (
    "CASE WHEN received_ns < 128 THEN printf('%02x', received_ns) "
    "WHEN received_ns < 256 THEN printf('cc%02x', received_ns) "
    "WHEN received_ns < 65536 THEN printf('cd%04x', received_ns) "
    "WHEN received_ns < 4294967296 THEN printf('ce%08x', received_ns) "
    "ELSE printf('cf%016x', received_ns) END"
)
_STR_HEADER_HEX = (
    "CASE WHEN length(topic_hex) < 64 THEN printf('%02x', 160 + length(topic_hex) // 2) "
    "WHEN length(topic_hex) < 512 THEN printf('d9%02x', length(topic_hex) // 2) "
    "ELSE printf('da%04x', length(topic_hex) // 2) END"
)
_BIN_HEADER_HEX = (
    "CASE WHEN pl < 256 THEN printf('c4%02x', pl) "
    "WHEN pl < 65536 THEN printf('c5%04x', pl) ELSE printf('c6%08x', pl) END"
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
_READING_SQL = f"""
WITH r AS (
    SELECT *, lower(hex(envelope)) AS env_hex, lower(hex(encode(topic))) AS topic_hex
    FROM readings WHERE block_height >= ? AND block_height < ?
), p AS (
    SELECT *, '9501c410' || lower(hex(salt)) || {_STR_HEADER_HEX} || topic_hex || {_UINT_HEX}
        AS prefix_hex
    FROM r
), q AS (
    SELECT *, substring(env_hex, length(prefix_hex) + 1) AS rest_hex FROM p
), t AS (
    SELECT *, substring(rest_hex, CASE substring(rest_hex, 1, 2) WHEN 'c4' THEN 5
        WHEN 'c5' THEN 7 WHEN 'c6' THEN 11 ELSE 1 END) AS payload_hex
    FROM q
), u AS (
    SELECT *, length(payload_hex) // 2 AS pl,
        TRY(json_transform(decode(unhex(payload_hex))::JSON, '{_JSON_SHAPE}')) AS j
    FROM t
)
SELECT block_height, leaf_index, leaf_hash,
    sha256(unhex('00') || envelope) = lower(hex(leaf_hash))
    AND env_hex = prefix_hex || {_BIN_HEADER_HEX} || payload_hex
    AND ends_with(topic, '/' || device_id || '/' || kind)
    AND CASE WHEN starts_with(payload_hex, '7b') THEN {_JSON_FIELDS_OK} ELSE NULL END
    AS row_ok
FROM u ORDER BY block_height, leaf_index
"""
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
    if not row[18]:  # leaf_ok, computed by DuckDB
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


def _global_checks(reader: StoreReader, key: PublicKey, trusted_head: bytes | None) -> AuditReport:
    """The checks that concern the store as a whole, made before the walk."""
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
    for leaf, count in reader.all(
        "SELECT leaf_hash, count(*) FROM readings GROUP BY leaf_hash HAVING count(*) > 1 LIMIT 100"
    ):
        report.add(
            "readings",
            f"leaf {bytes(leaf).hex()[:16]}",
            None,
            f"the same leaf is stored {count} times",
        )
    return report


@dataclass(frozen=True, slots=True)
class _Range:
    """Blocks with start <= height < stop (None: no bound), and the chain head before."""

    start: int | None
    stop: int | None
    head: bytes | None  # stored head_after of the block before; None: genesis


def _walk(
    reader: StoreReader,
    key: PublicKey,
    gateway_id: str | None,
    span: _Range,
    report: AuditReport,
    progress: Callable[[int], None] | None = None,
) -> ChainHead:
    """Audit the blocks and readings of one range; return the chain head after it."""
    start = ChainHead.genesis()
    if span.head is not None:
        try:
            start = ChainHead.from_bytes(span.head)
        except FormatError as exc:
            report.add("blocks", f"height {span.start}", span.start, f"unreadable head: {exc}")
    verifier = ChainVerifier({key.key_id: key}, gateway_id, start)
    bounds = [
        -(2**62) if span.start is None else span.start,
        2**62 if span.stop is None else span.stop,
    ]
    readings = _Readings(reader.stream(_READING_SQL, bounds))
    for row in reader.stream(_BLOCK_SQL, bounds):
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
            _check_batch(reader, height, header, rows, report)
        report.blocks += 1
        report.readings += len(rows)
        if progress is not None:
            progress(1)
    readings.rest(report)
    return verifier.head


def _finish(reader: StoreReader, head: ChainHead, report: AuditReport) -> AuditReport:
    stored_head = reader.meta("chain_head")
    if report.blocks and stored_head != head.to_bytes():
        report.add("meta", "chain_head", None, "meta chain_head does not follow from the blocks")
    report.head_height = head.height - 1 if head.height else None
    report.head_hash = head.prev_hash if head.height else None
    report.problems.sort(key=lambda p: (p.block is None, p.block or 0))
    return report


def _gateway_id(reader: StoreReader) -> str | None:
    raw = reader.meta("gateway_id")
    return raw.decode(errors="replace") if raw else None


def audit_store(
    reader: StoreReader,
    key: PublicKey,
    *,
    trusted_head: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Check everything in the store against the trusted gateway key, in this process.

    ``trusted_head`` is a block hash the auditor saw earlier (a checkpoint, the head of
    an earlier bundle): the store's chain must still contain it, which is how a
    rolled-back tail is caught.
    """
    report = _global_checks(reader, key, trusted_head)
    total = int((reader.one("SELECT count(*) FROM blocks") or (0,))[0])
    done = 0

    def step(blocks: int) -> None:
        nonlocal done
        done += blocks
        if progress is not None:
            progress(done, total)

    head = _walk(reader, key, _gateway_id(reader), _Range(None, None, None), report, step)
    return _finish(reader, head, report)


def _walk_in_process(
    path: str, key_raw: bytes, gateway_id: str | None, span: _Range
) -> tuple[AuditReport, bytes]:
    # Runs in a worker process: its own read-only connection, one DuckDB thread.
    report = AuditReport()
    with StoreReader.open(Path(path), threads=1) as reader:
        head = _walk(reader, PublicKey(key_raw), gateway_id, span, report)
    return report, head.to_bytes()


def audit_file(
    path: Path,
    key: PublicKey,
    *,
    trusted_head: bytes | None = None,
    workers: int = 1,
    min_span: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """:func:`audit_store` on a store file, split by height over ``workers`` processes.

    Ranges hold at least ``min_span`` blocks (smaller ones cost more than they save).

    Each process walks a range of blocks starting from the chain head stored with the
    block before it; the process of the previous range checks that stored head, so
    the ranges chain together exactly as one walk would.
    """
    with StoreReader.open(path) as reader:
        if workers <= 1:
            return audit_store(reader, key, trusted_head=trusted_head, progress=progress)
        report = _global_checks(reader, key, trusted_head)
        gateway_id = _gateway_id(reader)
        heights = reader.one("SELECT count(*), min(height), max(height) FROM blocks")
        assert heights is not None
        total = int(heights[0])
        spans = [_Range(None, None, None)]
        if total:
            low, high = int(heights[1]), int(heights[2])
            size = max(min_span, (high - low + 1) // (workers * 8) + 1)
            cuts = list(range(low + size, high + 1, size))
            spans = []
            for first, stop in zip([None, *cuts], [*cuts, None], strict=True):
                head = None
                if first is not None:
                    row = reader.one(
                        "SELECT head_after FROM blocks WHERE height < ? ORDER BY height DESC "
                        "LIMIT 1",
                        [first],
                    )
                    head = None if row is None else bytes(row[0])
                spans.append(_Range(first, stop, head))
        done = 0
        context = multiprocessing.get_context("spawn")  # no DuckDB state crosses a fork
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_walk_in_process, str(path), key.raw, gateway_id, span)
                for span in spans
            ]
            results = []
            for future in futures:
                part, head_bytes = future.result()
                results.append(head_bytes)
                report.blocks += part.blocks
                report.readings += part.readings
                for problem in part.problems:
                    report.add(problem.table, problem.row, problem.block, problem.reason)
                report.truncated |= part.truncated
                done += part.blocks
                if progress is not None:
                    progress(done, total)
        return _finish(reader, ChainHead.from_bytes(results[-1]), report)


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
    reader: StoreReader,
    height: int,
    header: BlockHeader,
    rows: list[tuple[Any, ...]],
    report: AuditReport,
) -> None:
    """Check one block's readings (light rows: height, index, leaf hash, row_ok)."""
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
    unsure = sorted({int(r[1]) for r in rows if r[3] is not True})
    if unsure:
        for full in reader.all(_FULL_SQL, [height, unsure]):
            if not _consistent(full):
                _check_reading(full, report)
    if MerkleTree([bytes(r[2]) for r in rows]).root != header.batch_root:
        report.add(
            "readings", f"block {height}", height, "the block's readings do not hash to its root"
        )


def _short(values: list[int]) -> str:
    text = ", ".join(map(str, values[:10]))
    return text + (f" and {len(values) - 10} more" if len(values) > 10 else "")
