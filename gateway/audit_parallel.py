"""``anchorgate audit --workers N``: one store file audited over height ranges in N processes.

This process and N-1 others walk ranges of blocks (:func:`gateway.audit.walk`) from one
ordered queue, each range starting from the chain head stored with the block before
it; the process of the previous range checks that stored head, so the ranges chain
together exactly as one walk would. The checks of the store as a whole run here.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gateway.audit import WINDOW_READINGS, Span, audit_store, finish, stored_gateway_id, walk
from gateway.audit_global import store_checks, times_apart
from gateway.audit_rows import AuditReport
from gateway.audit_sql import reference_layout
from gateway.reader import READ_MEMORY_LIMIT, StoreReader
from ledger import ChainHead, PublicKey

# A worker process's own read-only connection, one DuckDB thread, opened once for all
# its ranges: opening the file takes about 0.1 s, mostly waiting.
_worker_stores: dict[str, StoreReader] = {}


def _walk_in_process(
    path: str,
    key_raw: bytes,
    gateway_id: str | None,
    span: Span,
    window: int,
    memory_limit: str,
    reference: bool,
) -> tuple[AuditReport, bytes]:
    # Runs in a worker process.
    reader = _worker_stores.get(path)
    if reader is None:
        reader = StoreReader.open(Path(path), threads=1, memory_limit=memory_limit)
        _worker_stores[path] = reader
    report = AuditReport()
    head = walk(
        reader, PublicKey(key_raw), gateway_id, span, report, window=window, reference=reference
    )
    return report, head.to_bytes()


def _spans(reader: StoreReader, workers: int, min_span: int) -> tuple[list[Span], int]:
    """The height ranges for ``workers`` processes, and the block count.

    Each range takes a third of what is left per worker, and at least ``min_span``
    blocks: the first ranges are large (each costs about 20 ms of CPU in query plans),
    the last small, so the processes, which take the next range as they finish one,
    end close together (the last range to finish leaves the other cores idle). On 10M
    readings and 2 processes that is 24 ranges; a quarter made 31 and the audit about
    1% slower, a half 17 and up to 6% slower (the pool holds two ranges at a time).
    """
    heights = reader.one("SELECT count(*), min(height), max(height) FROM blocks")
    assert heights is not None
    total = int(heights[0])
    if not total:
        return [Span(None, None, None)], 0
    low, high = int(heights[1]), int(heights[2])
    cuts = []
    start = low
    while True:
        start += max(min_span, (high + 1 - start) // (workers * 3))
        if start > high:
            break
        cuts.append(start)
    spans = []
    for first, stop in zip([None, *cuts], [*cuts, None], strict=True):
        head = None
        if first is not None:
            row = reader.one(
                "SELECT head_after FROM blocks WHERE height < ? ORDER BY height DESC LIMIT 1",
                [first],
            )
            head = None if row is None else bytes(row[0])
        spans.append(Span(first, stop, head))
    return spans, total


def audit_file(
    path: Path,
    key: PublicKey,
    *,
    trusted_head: bytes | None = None,
    workers: int = 1,
    min_span: int = 64,
    progress: Callable[[int, int], None] | None = None,
    window: int = WINDOW_READINGS,
    memory_limit: str = READ_MEMORY_LIMIT,
    reference: bool | None = None,
) -> AuditReport:
    """:func:`audit_store` on a store file, split by height over ``workers`` processes.

    This process is one of them: it starts ``workers - 1`` more.

    Ranges hold at least ``min_span`` blocks (smaller ones cost more than they save).
    Each process's DuckDB keeps to ``memory_limit``, whatever the size of the store:
    without a limit DuckDB kept every page it read cached, about 930 MB per process on
    10 million readings; with 256MB the workers peak at 480-490 MB at the same speed
    (bench/audit.py), with 128MB at 280-360 MB.

    Each process walks a range of blocks starting from the chain head stored with the
    block before it; the process of the previous range checks that stored head, so
    the ranges chain together exactly as one walk would. The checks of the store as a
    whole run in this process first, while the others start.
    """
    # Beside the workers, which fill the cores, a second DuckDB thread for the store-wide
    # checks only adds contention.
    threads = 1 if workers > 1 else None
    with StoreReader.open(path, threads=threads, memory_limit=memory_limit) as reader:
        if workers <= 1:
            return audit_store(
                reader,
                key,
                trusted_head=trusted_head,
                progress=progress,
                window=window,
                reference=reference,
            )
        spans, total = _spans(reader, workers, min_span)
        job = _Job(
            reader,
            key,
            stored_gateway_id(reader),
            str(path),
            window,
            memory_limit,
            reference_layout(reader) if reference is None else reference,
        )
        context = multiprocessing.get_context("spawn")  # no DuckDB state crosses a fork
        with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
            try:
                futures = [pool.submit(_walk_in_process, *job.args(span)) for span in spans]
                report = store_checks(reader, key, trusted_head)
                # While the pool finishes its last ranges, this process has a core to spare
                # for the first check after the walk.
                apart: list[bool] = []
                parts = job.share(
                    spans,
                    futures,
                    _Progress(progress, total),
                    lambda: apart.append(times_apart(reader)),
                )
            except BaseException:
                # Interrupted, or a range failed. The ranges not started yet are dropped,
                # not run; only the ranges under way are waited for.
                pool.shutdown(cancel_futures=True)
                raise
        for part, _ in parts:
            report.extend(part)
        head = ChainHead.from_bytes(parts[-1][1])
        return finish(reader, head, report, apart[0] if apart else None)


class _Progress:
    """Blocks checked so far: this process's one by one, the pool's a range at a time."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int) -> None:
        self._progress, self._total = progress, total
        self._done = 0
        self._counted: set[int] = set()

    def step(self, blocks: int) -> None:
        self._done += blocks
        if self._progress is not None:
            self._progress(self._done, self._total)

    def pool_range_done(self, index: int, blocks: int) -> None:
        """The pool's range ``index`` is checked (counted the first time it is seen)."""
        if index not in self._counted:
            self._counted.add(index)
            self.step(blocks)


@dataclass(frozen=True, slots=True)
class _Job:
    """What every range of one parallel audit shares."""

    reader: StoreReader
    key: PublicKey
    gateway_id: str | None
    path: str
    window: int
    memory_limit: str
    reference: bool  # most payloads are in the reference layout

    def args(self, span: Span) -> tuple[str, bytes, str | None, Span, int, str, bool]:
        """The arguments of :func:`_walk_in_process` for ``span``."""
        return (
            self.path,
            self.key.raw,
            self.gateway_id,
            span,
            self.window,
            self.memory_limit,
            self.reference,
        )

    def share(
        self,
        spans: list[Span],
        futures: list[Future[tuple[AuditReport, bytes]]],
        progress: _Progress,
        meanwhile: Callable[[], None],
    ) -> list[tuple[AuditReport, bytes]]:
        """Walk ranges here beside the pool; every range's report and head, in order.

        This process takes each range the pool has not started yet, in order: the pool
        and this process share one queue of ranges, so they end close together, and one
        process fewer is started (about 0.5 s of CPU). When none is left to take and the
        pool is still at work, ``meanwhile`` runs.
        """
        parts: dict[int, tuple[AuditReport, bytes]] = {}
        for index, future in enumerate(futures):
            if future.cancel():
                part = AuditReport()
                head = walk(
                    self.reader,
                    self.key,
                    self.gateway_id,
                    spans[index],
                    part,
                    progress.step,
                    self.window,
                    self.reference,
                )
                parts[index] = (part, head.to_bytes())
            for other, finished in enumerate(futures[:index]):
                if other not in parts and finished.done():
                    progress.pool_range_done(other, finished.result()[0].blocks)
        if not all(future.done() for future in futures):
            meanwhile()
        for index, future in enumerate(futures):
            if index not in parts:
                parts[index] = future.result()
                progress.pool_range_done(index, parts[index][0].blocks)
        return [parts[index] for index in range(len(spans))]
