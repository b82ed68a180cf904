"""``anchorgate audit``: re-verify a whole store, streaming, and name every problem.

The audit walks the blocks table in height order and, beside it, the readings table
(one query per range of heights, read in Arrow batches of :data:`BATCH_READINGS`
readings; if the rows do not lie in written order, one grouped query per window of
:data:`WINDOW_READINGS` readings), so memory stays bounded whatever the size of the
store, and checks:

- every header against the chain (signature, height, previous hash, block log root,
  time order: ``ledger.ChainVerifier``), following key rotations from the trusted
  (original) key: a block signed by a key a rotation revoked is ``revoked-key``, by
  any other key ``unknown-key``; the stored block hash against the header,
  the stored header columns against the header, and the stored chain head after each
  block and in ``meta``;
- every reading's envelope against its leaf hash, its salt, topic and receive-time
  columns against the envelope, and its parsed columns against the envelope's payload;
- every block's leaf indexes (0..leaf_count-1, no gap, no repeat) and its batch root;
- readings whose block does not exist, alerts that point at no stored reading, and
  leaves stored in two blocks: after a walk without problems, the blocks' signed
  receive-time ranges prove there are none when they do not overlap (a leaf's
  envelope carries one receive time); otherwise every leaf hash is grouped.

Problems are collected, not raised: the report names table, row, block and reason
for each one, and the audit goes on past them. The per-row and per-block checks, and
the SQL that does most of them, are in :mod:`gateway.audit_rows` and
:mod:`gateway.audit_sql` (read by :mod:`gateway.audit_groups`), the checks of the
store as a whole in :mod:`gateway.audit_global`; this module walks the chain in one
process, and :mod:`gateway.audit_parallel` over height ranges in several.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.audit_global import key_history, repeated_leaves, store_checks, times_apart
from gateway.audit_groups import Readings, Untidy, block_groups, stream_groups, windows
from gateway.audit_rows import BLOCK_SQL, AuditReport, check_batch, check_block_columns
from gateway.audit_sql import reference_layout
from gateway.errors import StoreMismatchError
from gateway.reader import StoreReader
from ledger import (
    ChainError,
    ChainHead,
    ChainVerifier,
    FormatError,
    PublicKey,
)
from ledger.header import BlockHeader

# Readings per windowed query (when the rows are not in written order): about 15 MB of
# Arrow columns. Smaller windows cost more in planning (a few ms per query).
WINDOW_READINGS = 1 << 16
# Readings per Arrow batch of the one query per range. Small enough that the memory of a
# batch (DuckDB's Arrow buffers, the envelopes as Python bytes) is reused for the next
# one instead of being returned to the system and faulted in again: with 65,536 the
# kernel's page faults took about 15% of the audit's CPU, with 8,192 about 7%.
BATCH_READINGS = 1 << 13


@dataclass(frozen=True, slots=True)
class Span:
    """Blocks with start <= height < stop (None: no bound), and the chain head before."""

    start: int | None
    stop: int | None
    head: bytes | None  # stored head_after of the block before; None: genesis


def walk(
    reader: StoreReader,
    key: PublicKey,
    gateway_id: str | None,
    span: Span,
    report: AuditReport,
    progress: Callable[[int], None] | None = None,
    window: int = WINDOW_READINGS,
    reference: bool = False,
) -> ChainHead:
    """Audit the blocks and readings of one range; return the chain head after it.

    ``reference``: most payloads are in the reference layout (:func:`reference_layout`).
    """
    start = ChainHead.genesis()
    if span.head is not None:
        try:
            start = ChainHead.from_bytes(span.head)
        except FormatError as exc:
            report.add("blocks", f"height {span.start}", span.start, f"unreadable head: {exc}")
    keys, revoked = {key.key_id: key}, frozenset[bytes]()
    if span.start is not None:
        # A range that starts mid-chain starts with the key of its time; the ranges
        # before it verify the rotation blocks that say so.
        try:
            keys, revoked = key_history(reader, key).verifier_keys(span.start)
        except StoreMismatchError as exc:
            report.add("blocks", f"height {span.start}", span.start, str(exc))
    bounds = [
        -(2**62) if span.start is None else span.start,
        2**62 if span.stop is None else span.stop,
    ]
    # First with one query for the whole range; if its readings do not lie in written
    # order, again from the start with a grouped query per window of heights.
    walked = AuditReport()
    verifier = ChainVerifier(keys, gateway_id, start, revoked)
    try:
        batch = min(window, BATCH_READINGS)
        readings = Readings(stream_groups(reader, bounds[0], bounds[1], batch, reference))
        for row in reader.stream(BLOCK_SQL, bounds):
            _walk_block(verifier, reader, row, readings, walked)
            if progress is not None:
                progress(1)
        readings.rest(walked)
    except Untidy:
        if progress is not None:
            progress(-walked.blocks)
    else:
        report.extend(walked)
        return verifier.head
    verifier = ChainVerifier(keys, gateway_id, start, revoked)
    for blocks, low, high in windows(reader.stream(BLOCK_SQL, bounds), bounds, window):
        readings = Readings(iter(block_groups(reader, low, high)))
        for row in blocks:
            _walk_block(verifier, reader, row, readings, report)
            if progress is not None:
                progress(1)
        readings.rest(report)
    return verifier.head


def _walk_block(
    verifier: ChainVerifier,
    reader: StoreReader,
    row: tuple[Any, ...],
    readings: Readings,
    report: AuditReport,
) -> None:
    """Check one block row against the chain, and its readings against it."""
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
    group = readings.take(height, report) or (height, 0, True, [], None)
    if header is not None:
        check_block_columns(row, header, report)
        check_batch(reader, height, header, group, report)
    report.blocks += 1
    report.readings += group[1]


def finish(
    reader: StoreReader, head: ChainHead, report: AuditReport, apart: bool | None = None
) -> AuditReport:
    """The checks after the walk, and the report's head; ``apart``: times_apart, if known."""
    if not (report.ok and (times_apart(reader) if apart is None else apart)):
        repeated_leaves(reader, report)
    stored_head = reader.meta("chain_head")
    if report.blocks and stored_head != head.to_bytes():
        report.add("meta", "chain_head", None, "meta chain_head does not follow from the blocks")
    report.head_height = head.height - 1 if head.height else None
    report.head_hash = head.prev_hash if head.height else None
    report.problems.sort(key=lambda p: (p.block is None, p.block or 0))
    return report


def stored_gateway_id(reader: StoreReader) -> str | None:
    raw = reader.meta("gateway_id")
    return raw.decode(errors="replace") if raw else None


def audit_store(
    reader: StoreReader,
    key: PublicKey,
    *,
    trusted_head: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    window: int = WINDOW_READINGS,
    reference: bool | None = None,
) -> AuditReport:
    """Check everything in the store against the trusted gateway key, in this process.

    ``trusted_head`` is a block hash the auditor saw earlier (a checkpoint, the head of
    an earlier bundle): the store's chain must still contain it, which is how a
    rolled-back tail is caught. ``window`` is about how many readings one query reads.
    ``reference``: whether to read with the query for payloads in the reference layout
    (None: as a sample of the store suggests, :func:`reference_layout`); the verdict is
    the same either way, only the speed differs.
    """
    report = store_checks(reader, key, trusted_head)
    total = int((reader.one("SELECT count(*) FROM blocks") or (0,))[0])
    done = 0

    def step(blocks: int) -> None:
        nonlocal done
        done += blocks
        if progress is not None:
            progress(done, total)

    if reference is None:
        reference = reference_layout(reader)
    span = Span(None, None, None)
    head = walk(reader, key, stored_gateway_id(reader), span, report, step, window, reference)
    return finish(reader, head, report)


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
        header = BlockHeader.from_bytes(header_bytes)
    except FormatError:
        return None
    if header.new_key is not None and header.key_id in verifier.keys:
        # A rotation that failed another rule (already reported): the blocks after it
        # are signed by its new key, so check them under that key.
        new_key = PublicKey(header.new_key)
        verifier.revoked.update(verifier.keys)
        verifier.keys = {new_key.key_id: new_key}
    return header
