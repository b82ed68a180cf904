"""The pipeline with a device registry: who must sign, bad signatures, replays, restarts.

A real DuckDB store and the real pipeline and anchorer, fed from a list (the broker
end to end is in test_device_e2e.py).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from device_helpers import KEYS, NOW_MS, NOW_NS, bad_signature, registry, signed, unsigned

from gateway.anchor import Anchorer
from gateway.config import BatchSection, LimitsSection
from gateway.decode import Decoder
from gateway.device_auth import Authenticator
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, RawMessage
from gateway.store import Store
from ledger import SigningKey

GATEWAY_KEY = SigningKey.from_seed(bytes(range(32)))


class Run:
    """One gateway life on a store: feed it messages, read back what happened."""

    def __init__(
        self,
        path: Path,
        require: bool,
        *,
        window_ns: int = 10**12,
        start_ns: int = NOW_NS,
        verify_processes: int = 0,
    ) -> None:
        self.store = Store.open(path)
        clock = itertools.count(NOW_NS + 10**9, 1000)
        self.anchorer = Anchorer(
            self.store,
            GATEWAY_KEY,
            "gw-dev",
            duplicate_window_ns=window_ns,
            clock=lambda: next(clock),
        )
        self.executor = ThreadPoolExecutor(1)
        self.received = itertools.count(start_ns)
        self.pipeline = Pipeline(
            Decoder(LimitsSection()),
            self.anchorer,
            BatchSection(max_readings=100, max_delay=60),
            Metrics(),
            self.executor,
            Authenticator(registry(), require),
            verify_processes,
        )
        self.acked: list[object] = []

    async def feed(self, messages: Sequence[tuple[str, bytes]]) -> None:
        raw = [RawMessage(t, p, next(self.received), token=i) for i, (t, p) in enumerate(messages)]

        async def source() -> AsyncIterator[list[RawMessage]]:
            yield raw

        await self.pipeline.run(source(), lambda done: self.acked.extend(m.token for m in done))
        assert len(self.acked) == len(raw)
        self.acked.clear()

    def rejects(self) -> list[tuple[str, str, str]]:
        """(topic, field, reason) in the order received."""
        rows = self.store.query("SELECT topic, field, reason FROM rejects ORDER BY received_ns")
        return [(str(t), str(f), str(r)) for t, f, r in rows]

    def stored(self) -> list[tuple[str, int | None]]:
        rows = self.store.query("SELECT device_id, seq FROM readings ORDER BY received_ns")
        return [(str(d), s) for d, s in rows]

    def close(self) -> None:
        self.store.close()
        self.executor.shutdown()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "devices.duckdb"


async def test_require_signature_rejects_each_bad_kind_with_its_reason(store_path: Path) -> None:
    run = Run(store_path, require=True)
    await run.feed(
        [
            signed("dev-a", 1),
            unsigned("dev-a", 2),  # must sign
            bad_signature("dev-a", 3),
            signed("dev-x", 1),  # unknown device, signed
            unsigned("dev-x", 1),  # unknown device, unsigned
            signed("dev-r", 1),  # revoked
            signed("dev-a", 4, key="dev-b"),  # another device's key
            signed("dev-a", 5, topic_device="dev-b"),  # dev-a's reading on dev-b's topic
            signed("dev-a", None),  # no seq: replays could not be told
            signed("dev-a", 6),
            unsigned("dev-o", 1),  # this device is registered as not required to sign
        ]
    )
    assert run.stored() == [("dev-a", 1), ("dev-a", 6), ("dev-o", 1)]
    fields_and_words = [(field, reason.split(":")[0]) for _, field, reason in run.rejects()]
    assert fields_and_words == [
        ("signature", "missing"),
        ("signature", "bad signature"),
        ("device_id", "unknown device 'dev-x'"),
        ("device_id", "unknown device 'dev-x'"),
        ("device_id", "device 'dev-r' was revoked at 2026-11-24T01"),
        ("key_id", "unknown key " + KEYS["dev-b"].key_id.hex()[:16]),
        ("device_id", "'dev-a' in the signed reading differs from 'dev-b' in the topic"),
        ("seq", "is missing"),
    ]
    assert "does not verify" in run.rejects()[1][2]
    run.close()


async def test_without_require_signature_unsigned_readings_pass_and_signed_ones_are_checked(
    store_path: Path,
) -> None:
    run = Run(store_path, require=False)
    await run.feed(
        [unsigned("dev-a", 1), unsigned("dev-x", 1), bad_signature("dev-a", 2), signed("dev-x", 2)]
    )
    assert run.stored() == [("dev-a", 1), ("dev-x", 1)]
    assert [f for _, f, _ in run.rejects()] == ["signature", "device_id"]
    run.close()


async def test_replays_are_rejected_redeliveries_stay_duplicates(store_path: Path) -> None:
    run = Run(store_path, require=True)
    first = [signed("dev-a", seq) for seq in (5, 6, 7)]
    await run.feed(first)
    await run.feed(
        [
            first[1],  # the same bytes again: a broker redelivery
            signed("dev-a", 6, celsius=99.0),  # seq 6 again, another payload
            signed("dev-a", 3),  # below the mark, never stored
            signed("dev-a", 8),
            signed("dev-a", 8, celsius=1.0),  # seq 8 twice within one batch
            signed("dev-a", 7, ts=NOW_MS - 5),  # seq 7 again, another payload
        ]
    )
    assert run.stored() == [("dev-a", 5), ("dev-a", 6), ("dev-a", 7), ("dev-a", 8)]
    assert run.pipeline.metrics.duplicates == 1
    reasons = [(field, reason) for _, field, reason in run.rejects()]
    assert [f for f, _ in reasons] == ["seq", "seq", "seq", "seq"]
    assert "seq 6 is already stored with another payload" in reasons[0][1]
    assert "seq 3 is at or below 7" in reasons[1][1]
    assert "seq 8 is already stored with another payload" in reasons[2][1]
    assert reasons[3][1].startswith("replay: dev-a/temperature seq 7")
    run.close()


async def test_a_restarted_gateway_still_rejects_replays(store_path: Path) -> None:
    run = Run(store_path, require=True)
    await run.feed([signed("dev-a", seq) for seq in range(1, 11)])
    run.close()
    # The restarted gateway's duplicate window is 1 ns before its newest reading (seq
    # 10): only the replay guard, loaded from the store, knows that seq 2 and 4 were
    # used; even seq 2's very bytes, older than the window, count as a replay.
    again = Run(store_path, require=True, window_ns=1, start_ns=NOW_NS + 10**6)
    await again.feed(
        [
            signed("dev-a", 4, celsius=50.0),
            signed("dev-a", 2),
            signed("dev-a", 10),
            signed("dev-a", 11),
        ]
    )
    assert again.stored()[-1] == ("dev-a", 11)
    assert len(again.stored()) == 11
    assert again.pipeline.metrics.duplicates == 1  # seq 10 again: inside the window
    assert [r for _, _, r in again.rejects()] == [
        "replay: dev-a/temperature seq 4 is at or below 10, the last stored",
        "replay: dev-a/temperature seq 2 is at or below 10, the last stored",
    ]
    again.close()


async def test_signature_checks_are_made_off_the_event_loop(store_path: Path) -> None:
    import threading

    from gateway import device_auth

    threads: set[str] = set()
    original = device_auth.PendingSignature.check

    def spy(self: device_auth.PendingSignature) -> None:
        threads.add(threading.current_thread().name)
        original(self)

    run = Run(store_path, require=True)
    device_auth.PendingSignature.check = spy  # type: ignore[method-assign]
    try:
        await run.feed([signed("dev-a", seq) for seq in range(20)])
    finally:
        device_auth.PendingSignature.check = original  # type: ignore[method-assign]
    assert len(run.stored()) == 20
    assert threads
    assert threading.main_thread().name not in threads
    run.close()


async def test_signatures_can_be_verified_in_worker_processes(store_path: Path) -> None:
    run = Run(store_path, require=True, verify_processes=1)
    await run.feed([signed("dev-a", 1), bad_signature("dev-a", 2), signed("dev-a", 3)])
    await run.feed([signed("dev-a", 4)])  # a second run of the pipeline: a new pool
    assert run.stored() == [("dev-a", 1), ("dev-a", 3), ("dev-a", 4)]
    assert [(f, r.split(":")[0]) for _, f, r in run.rejects()] == [("signature", "bad signature")]
    run.close()
