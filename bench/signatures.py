"""Signature benchmark: gateway ingest with device signatures off and on, same run.

Usage: .venv/bin/python bench/signatures.py [--readings 50000] [--publishers 2]
                                            [--loop-readings 20000]

(a) Ed25519 alone: verifications per second on one core with ``cryptography``
    (the ceiling a single verifying thread can reach).
(b) Gateway end to end (``anchorgate run`` as a child process, as bench/ingest.py):
    the same number of readings from 200 devices queued in the broker, then drained.
    "off": unsigned readings, no registry. "on": every reading signed by its device
    (docs/FORMAT.md section 10), a registry of the 200 devices and
    ``require_signature = true``. Rate = readings / (last block - first receive),
    from the store; receive-to-block latency p50 / p99.
(c) Event-loop responsiveness while verifying: the real pipeline, decoder, anchorer
    and a DuckDB store in this process, fed signed readings as fast as it takes them,
    with a ticker task that sleeps 1 ms and records how late it wakes up (the loop
    lag). Compared with the time one batch's verifications would block the loop if
    they were made on it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import MAX_READINGS, Gateway, publish_messages, store_figures  # noqa: E402

from gateway.anchor import Anchorer  # noqa: E402
from gateway.config import BatchSection, LimitsSection  # noqa: E402
from gateway.decode import Decoder  # noqa: E402
from gateway.device_auth import Authenticator, PendingSignature, verify_pending  # noqa: E402
from gateway.devices import Device, Registry, save_registry  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.mosquitto import Mosquitto  # noqa: E402
from gateway.pipeline import Pipeline, RawMessage  # noqa: E402
from gateway.readings import TemperatureReading, encode_reading, topic_for  # noqa: E402
from gateway.store import Store  # noqa: E402
from ledger import SigningKey  # noqa: E402
from ledger.device_sig import SignedReading, sign_reading  # noqa: E402

DEVICES = 200


def device_id(n: int) -> str:
    return f"dev-{n % DEVICES:04d}"


def device_key(n: int) -> SigningKey:
    return SigningKey.from_seed((n % DEVICES).to_bytes(4, "big") * 8)


def payload(n: int, now_ms: int, signed: bool) -> tuple[str, bytes]:
    device = device_id(n)
    topic = topic_for(device, "temperature")
    reading = encode_reading(TemperatureReading(device, n // DEVICES, now_ms, 21.5, "asset-1"))
    if not signed:
        return topic, reading
    return topic, sign_reading(device_key(n), topic, device, reading).to_bytes()


def _publish_worker(
    host: str, port: int, index: int, publishers: int, total: int, signed: bool
) -> None:
    """Publish the readings of this worker's devices, each device's in seq order.

    A device's readings all come from one worker: from two, they would interleave in
    the broker and the gateway would rightly refuse the late lower seqs as replays.
    """
    mine = [n for n in range(total) if (n % DEVICES) % publishers == index]
    now_ms = time.time_ns() // 1_000_000
    messages = (payload(n, now_ms, signed) for n in mine)
    publish_messages(host, port, f"bench-sig-pub-{index}", messages, len(mine))


def publish(broker: Mosquitto, count: int, publishers: int, signed: bool) -> None:
    procs = []
    for i in range(publishers):
        proc = multiprocessing.Process(
            target=_publish_worker, args=(broker.host, broker.port, i, publishers, count, signed)
        )
        proc.start()
        procs.append(proc)
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"publisher exited {proc.exitcode}")


def registry() -> Registry:
    return Registry(
        {
            device_id(n): Device(device_id(n), device_key(n).public_key, "asset-1")
            for n in range(DEVICES)
        }
    )


def gateway_rate(
    workdir: Path, broker: Mosquitto, count: int, publishers: int, signed: bool, processes: int = 0
) -> dict[str, float]:
    """Queue ``count`` readings for a fresh gateway session, then let the gateway drain them."""
    gateway = Gateway(workdir, broker, api=False)
    if signed:
        save_registry(registry(), workdir / "devices.toml")
        text = gateway.config.read_text()
        text += f'[devices]\nregistry = "{workdir / "devices.toml"}"\nrequire_signature = true\n'
        text += f"verify_processes = {processes}\n"
        gateway.config.write_text(text)
    gateway.start()  # makes the persistent session
    gateway.stop()
    publish(broker, count, publishers, signed)
    gateway.start()
    gateway.drain(count)
    health = gateway.health()
    gateway.stop()
    if health.get("stored") != count:
        raise RuntimeError(f"stored {health.get('stored')} of {count}: {health}")
    return store_figures(gateway.store, 0)


def verify_rate(seconds: float = 2.0) -> float:
    key = device_key(0)
    signed = sign_reading(key, "sensors/dev-0000/temperature", "dev-0000", b'{"ts":1}')
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(500):
            signed.verify("sensors/dev-0000/temperature", key.public_key)
        done += 500
    return done / (time.perf_counter() - started)


async def loop_lag(workdir: Path, count: int, signed: bool, processes: int = 0) -> dict[str, float]:
    """Max and p99 lag of a 1 ms ticker while the pipeline ingests ``count`` readings."""
    store = Store.open(workdir / f"lag-{signed}-{processes}.duckdb")
    clock = itertools.count(time.time_ns(), 1000)
    anchorer = Anchorer(
        store,
        SigningKey.generate(),
        "bench",
        duplicate_window_ns=3600 * 10**9,
        clock=lambda: next(clock),
    )
    executor = ThreadPoolExecutor(1)
    pipeline = Pipeline(
        Decoder(LimitsSection()),
        anchorer,
        BatchSection(max_readings=MAX_READINGS, max_delay=1.0),
        Metrics(),
        executor,
        Authenticator(registry(), require_signature=signed),
        processes,
    )
    now_ms = time.time_ns() // 1_000_000
    messages = [
        RawMessage(*payload(n, now_ms, signed), received_ns=time.time_ns()) for n in range(count)
    ]
    lags: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    async def source() -> AsyncIterator[list[RawMessage]]:
        for start in range(0, count, 100):  # as the subscriber hands over chunks
            yield messages[start : start + 100]
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await pipeline.run(source(), lambda done: None)
    elapsed = time.perf_counter() - started
    running = False
    await tick
    store.close()
    executor.shutdown()
    if pipeline.metrics.stored != count:
        raise RuntimeError(f"stored {pipeline.metrics.stored} of {count}")
    lags.sort()
    return {
        "rate": count / elapsed,
        "max_ms": lags[-1] * 1000,
        "p99_ms": lags[int(len(lags) * 0.99)] * 1000,
        "median_ms": statistics.median(lags) * 1000,
    }


def on_loop_block_ms(batch: int = MAX_READINGS) -> float:
    """How long one batch's verifications take when made in one go (as on the loop)."""
    now_ms = time.time_ns() // 1_000_000
    checks = []
    for n in range(batch):
        topic, data = payload(n, now_ms, True)
        signed = SignedReading.from_bytes(data)
        checks.append((n, PendingSignature(topic, signed, device_key(n).public_key)))
    started = time.perf_counter()
    assert not verify_pending(checks)
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--loop-readings", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(f"(a) Ed25519 verify, one thread: {verify_rate():,.0f}/s")
    with tempfile.TemporaryDirectory(prefix="anchorgate-bench-sig-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "broker", persistence=False) as broker:
            off = gateway_rate(work / "off", broker, args.readings, args.publishers, False)
            on = gateway_rate(work / "on", broker, args.readings, args.publishers, True)
            on_proc = gateway_rate(work / "on-p", broker, args.readings, args.publishers, True, 1)
        print(f"(b) gateway end to end, {args.readings:,} readings from {DEVICES} devices:")
        rows = (
            ("signatures off", off),
            ("signatures on, verified in a thread", on),
            ("signatures on, verify_processes = 1", on_proc),
        )
        for name, fig in rows:
            print(
                f"    {name}: {fig['rate']:,.0f} readings/s ({fig['rate'] / off['rate']:.0%} of "
                f"off), latency p50 {fig['p50']:.2f} s p99 {fig['p99']:.2f} s"
            )
        block = on_loop_block_ms()
        lag_off = asyncio.run(loop_lag(work, args.loop_readings, False))
        lag_on = asyncio.run(loop_lag(work, args.loop_readings, True))
        lag_proc = asyncio.run(loop_lag(work, args.loop_readings, True, 1))
    print(f"(c) event loop lag, in-process pipeline, {args.loop_readings:,} readings:")
    lags = (
        ("signatures off", lag_off),
        ("signatures on, verified in a thread", lag_on),
        ("signatures on, verify_processes = 1", lag_proc),
    )
    for name, fig in lags:
        print(
            f"    {name}: {fig['rate']:,.0f} readings/s; ticker lag median "
            f"{fig['median_ms']:.2f} ms, p99 {fig['p99_ms']:.2f} ms, max {fig['max_ms']:.1f} ms"
        )
    print(f"    one batch of {MAX_READINGS} verified in one go would block the loop {block:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
