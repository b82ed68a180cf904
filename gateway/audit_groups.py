"""The audit's readings, one group per block, in height order.

:func:`stream_groups` (one query per range, in Arrow batches) and :func:`block_groups`
(one window of heights) turn the rows of :data:`gateway.audit_sql.READING_SQL` into one
row per block, the shape of :data:`gateway.audit_sql.BLOCK_READINGS_SQL`, for
:func:`gateway.audit_rows.check_batch`; :class:`Readings` hands the walk each block's
group in height order, and :func:`windows` cuts the blocks into the windows of the
grouped path.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Generator, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gateway.audit_rows import AuditReport
from gateway.audit_sql import BLOCK_READINGS_SQL, READING_SQL, REFERENCE_READING_SQL
from gateway.reader import StoreReader
from ledger.merkle import LEAF_PREFIX

_LEAF_STATE = hashlib.sha256(LEAF_PREFIX)


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


class Untidy(Exception):
    """The readings of a range do not lie in the file in the order the gateway wrote."""


def stream_groups(
    reader: StoreReader, low: int, high: int, rows: int, reference: bool = False
) -> Iterator[tuple[Any, ...]]:
    """The rows of :data:`BLOCK_READINGS_SQL` for the heights [low, high), from one query.

    :data:`READING_SQL` (with ``reference``, :data:`REFERENCE_READING_SQL`) is read in
    Arrow batches of about ``rows`` rows (memory stays bounded) and cut into blocks as
    :func:`cut_groups` does, the last block of a batch held back until the next batch
    shows where it ends. One query for a whole range
    costs its planning once (about 0.1 us per reading less than a query per window).
    This needs the rows in written order everywhere in the range: raises
    :class:`Untidy` when they are not, possibly after yielding some groups, which
    the caller must then throw away (and use :func:`block_groups` per window).
    """
    carry: pa.Table | None = None
    last: int | None = None  # height of the last group yielded
    sql = REFERENCE_READING_SQL if reference else READING_SQL
    for batch in reader.batches(sql, [low, high], rows):
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table])
        heights = table.column("block_height")
        cut = pc.index(heights, heights[-1]).as_py()  # where the last block starts
        if cut == 0:
            if not pc.all(pc.equal(heights, heights[-1])).as_py():
                raise Untidy  # the last height comes before another one too
        else:
            last = yield from _tidy_groups(table.slice(0, cut), last)
        carry = table.slice(cut)
    if carry is not None:
        yield from _tidy_groups(carry, last)


def _tidy_groups(table: pa.Table, last: int | None) -> Generator[tuple[Any, ...], None, int | None]:
    groups = cut_groups(table)
    if groups is None or (groups and last is not None and groups[0][0] <= last):
        raise Untidy
    yield from groups
    return groups[-1][0] if groups else last


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
    new = _LEAF_STATE.copy  # cheaper than a new hash object: see ledger.merkle
    hashes: list[bytes] = []
    append = hashes.append
    for envelope in table.column("envelope").to_pylist():
        leaf = new()
        leaf.update(envelope)
        append(leaf.digest())
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


def windows(
    blocks: Iterator[tuple[Any, ...]], bounds: list[int], window: int
) -> Iterator[tuple[list[tuple[Any, ...]], int, int]]:
    """Block rows in groups of about ``window`` readings, each with its heights [low, high).

    The height ranges cover ``bounds`` exactly, one after the other, so every reading in
    bounds, even one whose block does not exist, is in exactly one window; blocks of one
    height are never split.
    """
    low, readings = bounds[0], 0
    group: list[tuple[Any, ...]] = []
    for row in blocks:
        height = int(row[0])
        if readings >= window and height != int(group[-1][0]):
            yield group, low, height
            low, group, readings = height, [], 0
        group.append(row)
        readings += min(max(int(row[4]), 1), window)  # the leaf_count column, unchecked yet
    yield group, low, bounds[1]


class Readings:
    """A range's or window's per-block reading groups, in height order, one looked ahead."""

    def __init__(self, groups: Iterator[tuple[Any, ...]]) -> None:
        self._groups = groups
        self._next: tuple[Any, ...] | None = next(groups, None)

    def take(self, height: int, report: AuditReport) -> tuple[Any, ...] | None:
        """The group of block ``height``; groups of lower, missing blocks are reported."""
        while self._next is not None and self._next[0] < height:
            self._orphans(self._next, report)
            self._next = next(self._groups, None)
        if self._next is not None and self._next[0] == height:
            group, self._next = self._next, next(self._groups, None)
            return group
        return None

    def rest(self, report: AuditReport) -> None:
        while self._next is not None:
            self._orphans(self._next, report)
            self._next = next(self._groups, None)

    @staticmethod
    def _orphans(group: tuple[Any, ...], report: AuditReport) -> None:
        height, count = group[0], group[1]
        report.add(
            "readings",
            f"{count} reading(s) of block {height}",
            height,
            f"their block {height} does not exist in the blocks table",
        )
