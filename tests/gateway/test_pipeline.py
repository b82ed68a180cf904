"""The pipeline with a list as its source: batches by size and time, acks after commit, in order."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gateway_cases import BAD_INPUTS, NOW_MS, NOW_NS

from gateway.anchor import Anchorer
from gateway.config import BatchSection, LimitsSection
from gateway.decode import Decoder
from gateway.errors import StoreError
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, RawMessage
from gateway.readings import TemperatureReading, encode_reading, topic_for
from gateway.store import Store
from ledger import SigningKey

KEY = SigningKey.from_seed(bytes(range(32)))


def message(n: int, device: str = "d1") -> RawMessage:
    payload = encode_reading(TemperatureReading(device, n, NOW_MS, 20.0))
    return RawMessage(topic_for(device, "temperature"), payload, NOW_NS + n, token=n)


async def from_list(
    messages: Sequence[RawMessage], pause: float = 0.0, chunk: int = 3
) -> AsyncIterator[list[RawMessage]]:
    for start in range(0, len(messages), chunk):
        yield list(messages[start : start + chunk])
        if pause:
            await asyncio.sleep(pause)


class Recorder:
    """Records acks and, at each ack, how many readings the store holds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.acked: list[object] = []
        self.stored_at_ack: list[int] = []

    def __call__(self, messages: Sequence[RawMessage]) -> None:
        self.acked.extend(m.token for m in messages)
        self.stored_at_ack.append(self.store.counts().readings + self.store.counts().rejects)


def make(tmp_path: Path, batch: BatchSection) -> tuple[Pipeline, Store, ThreadPoolExecutor]:
    store = Store.open(tmp_path / "p.duckdb")
    clock = itertools.count(NOW_NS + 10**9, 1000)
    anchorer = Anchorer(store, KEY, "gw-p", duplicate_window_ns=10**12, clock=lambda: next(clock))
    executor = ThreadPoolExecutor(1)
    pipeline = Pipeline(Decoder(LimitsSection()), anchorer, batch, Metrics(), executor)
    return pipeline, store, executor


async def test_batches_close_at_max_readings_and_acks_follow_commits_in_order(
    tmp_path: Path,
) -> None:
    pipeline, store, executor = make(tmp_path, BatchSection(max_readings=10, max_delay=60))
    recorder = Recorder(store)
    await pipeline.run(from_list([message(n) for n in range(35)]), recorder)
    assert recorder.acked == list(range(35))
    assert recorder.stored_at_ack == [10, 20, 30, 35]  # each ack after its own commit
    assert store.counts().blocks == 4
    assert pipeline.metrics.stored == 35
    store.close()
    executor.shutdown()


async def test_a_batch_closes_after_max_delay(tmp_path: Path) -> None:
    pipeline, store, executor = make(tmp_path, BatchSection(max_readings=1000, max_delay=0.05))
    recorder = Recorder(store)
    await pipeline.run(from_list([message(n) for n in range(6)], pause=0.03, chunk=1), recorder)
    assert recorder.acked == list(range(6))
    assert 2 <= store.counts().blocks <= 5
    store.close()
    executor.shutdown()


async def test_rejects_and_duplicates_are_committed_and_acked_in_place(tmp_path: Path) -> None:
    pipeline, store, executor = make(tmp_path, BatchSection(max_readings=7, max_delay=60))
    recorder = Recorder(store)
    bad = [RawMessage(b.topic, b.payload, NOW_NS, token=f"bad-{b.id}") for b in BAD_INPUTS]
    good = [message(n) for n in range(len(bad))]
    mixed = [m for pair in zip(good, bad, strict=True) for m in pair] + [message(0), message(1)]
    await pipeline.run(from_list(mixed), recorder)
    assert recorder.acked == [m.token for m in mixed]
    metrics = pipeline.metrics
    assert (metrics.stored, metrics.rejects, metrics.duplicates) == (len(good), len(bad), 2)
    rows = dict(store.query("SELECT payload, field FROM rejects"))
    assert all(rows[b.payload] == b.field for b in BAD_INPUTS if b.payload in rows)
    assert len(store.query("SELECT * FROM rejects")) == len(bad)
    store.close()
    executor.shutdown()


async def test_a_failing_commit_is_retried_and_nothing_is_acked_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "RETRY_MIN_DELAY", 0.01)
    pipeline, store, executor = make(tmp_path, BatchSection(max_readings=5, max_delay=60))
    recorder = Recorder(store)
    failures = iter([True, True, False])
    original = store.commit_batch

    def flaky(*args: object, **kwargs: object) -> None:
        if next(failures, False):
            raise StoreError("store: commit a batch failed: disk full")
        original(*args, **kwargs)  # type: ignore[arg-type]

    store.commit_batch = flaky  # type: ignore[method-assign]
    await pipeline.run(from_list([message(n) for n in range(5)]), recorder)
    assert recorder.acked == list(range(5))
    assert recorder.stored_at_ack == [5]
    assert pipeline.metrics.commit_failures == 2
    assert store.counts().blocks == 1
    store.close()
    executor.shutdown()


async def test_a_flood_of_rejects_is_logged_briefly_and_stored_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, store, executor = make(tmp_path, BatchSection(max_readings=100, max_delay=60))
    junk = [RawMessage("sensors/d1/temperature", b"junk %d" % n, NOW_NS, n) for n in range(30)]
    with caplog.at_level(logging.INFO, logger="anchorgate"):
        await pipeline.run(from_list(junk), Recorder(store))
    events = [record.getMessage() for record in caplog.records]
    assert events.count("reading.rejected") == 10
    assert events.count("reading.rejected_more") == 1
    assert store.counts().rejects == 30
    store.close()
    executor.shutdown()
