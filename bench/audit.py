"""Auditor speed on a big store: export, bundle size, verify, and audit throughput.

Run: .venv/bin/python bench/audit.py [--readings 10000000] [--batch 1000] [--dir DIR]

It builds the store without MQTT, through the gateway's own decoder, anchorer and
store (the same code ``anchorgate run`` uses), reusing it on later runs of the same
size. Figures (targets from the auditor issue):

- export of a bundle for one reading, and for one device's day of readings;
- the size of the one-reading bundle (target: under 4 KiB);
- the time to verify each bundle;
- ``audit`` throughput in readings per second, beside the same run's floor: a plain
  hashlib loop computing SHA-256 over the same envelope bytes (target: at least 40%).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.anchor import Accepted, Anchorer
from gateway.audit import audit_file, audit_store
from gateway.config import LimitsSection
from gateway.decode import Decoder
from gateway.proofs import export_bundle
from gateway.reader import ReadingRef, Selection, StoreReader
from gateway.readings import TemperatureReading, encode_reading, topic_for
from gateway.store import Store
from ledger import SigningKey, dumps_bundle, verify_bundle

T = TypeVar("T")
T0_NS = 1_764_000_000_000_000_000
DEVICES = 1000
SEED = bytes(range(32))


def build(path: Path, readings: int, batch: int) -> None:
    """A store of ``readings`` temperature readings from DEVICES devices, 1 per second each."""
    key = SigningKey.from_seed(SEED)
    store = Store.open(path, memory_limit="256MB", threads=2)
    clock = itertools.count(T0_NS, 1000)
    anchorer = Anchorer(
        store, key, "gw-bench", duplicate_window_ns=0, clock=lambda: next(clock) + 10**12
    )
    decoder = Decoder(LimitsSection())
    started = time.perf_counter()
    for first in range(0, readings, batch):
        items = []
        for n in range(first, min(first + batch, readings)):
            device, second = n % DEVICES, n // DEVICES
            reading = TemperatureReading(
                f"reefer-{device:04d}",
                second,
                T0_NS // 1_000_000 + second * 1000,
                4.0 + (n % 37) / 10,
                f"SHIP-{device % 100:03d}",
            )
            payload = encode_reading(reading)
            topic = topic_for(reading.device_id, "temperature")
            received = T0_NS + second * 10**9 + device * 1000
            items.append(
                Accepted(topic, payload, received, decoder.decode(topic, payload, received), "json")
            )
        anchorer.commit(items)
        if first // batch % 500 == 0:
            rate = (first + batch) / (time.perf_counter() - started)
            print(f"  built {first + batch} readings ({rate:.0f}/s)", flush=True)
    store.close()


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/anchorgate-bench-audit"))
    args = parser.parse_args()
    path = args.dir / f"store-{args.readings}-{args.batch}.duckdb"
    if not path.exists():
        shutil.rmtree(args.dir, ignore_errors=True)
        args.dir.mkdir(parents=True)
        print(f"building {path} ...")
        _, seconds = timed(lambda: build(path, args.readings, args.batch))
        print(f"built in {seconds:.1f} s")
    key = SigningKey.from_seed(SEED).public_key
    print(f"store: {path} ({path.stat().st_size / 1e6:.0f} MB, {args.readings} readings)")

    with StoreReader.open(path) as reader:
        one, seconds = timed(
            lambda: export_bundle(reader, Selection(reading_ids=(ReadingRef(0, 7),)))
        )
        data = dumps_bundle(one.bundle)
        print(f"export one reading (block 0, oldest): {seconds * 1000:.0f} ms")
        print(f"bundle size for one reading: {len(data)} bytes  (target < 4096)")
        report, seconds = timed(lambda: verify_bundle(data, key))
        assert report.valid, report.failure
        print(f"verify it: {seconds * 1000:.1f} ms")

        day = Selection(device_id="reefer-0042", since_ns=T0_NS, until_ns=T0_NS + 86_400 * 10**9)
        many, seconds = timed(lambda: export_bundle(reader, day))
        data = dumps_bundle(many.bundle)
        print(
            f"export one device's day: {many.readings} readings from {many.blocks} blocks in "
            f"{seconds:.2f} s, {len(data) / 1e6:.2f} MB"
        )
        report, seconds = timed(lambda: verify_bundle(data, key))
        assert report.valid, report.failure
        print(f"verify it: {seconds:.2f} s")

        audit, audit_s = timed(lambda: audit_store(reader, key))
        assert audit.ok, audit.problems[:3]
        one_rate = audit.readings / audit_s
        print(
            f"audit, one process: {audit.readings} readings, {audit.blocks} blocks in "
            f"{audit_s:.1f} s = {one_rate:.0f} readings/s"
        )
        workers = os.cpu_count() or 1
        audit, audit_s = timed(lambda: audit_file(path, key, workers=workers))
        assert audit.ok, audit.problems[:3]
        rate = audit.readings / audit_s
        print(f"audit, {workers} processes: {audit_s:.1f} s = {rate:.0f} readings/s")

        def floor() -> int:
            count = 0
            sha = hashlib.sha256
            for (envelope,) in reader.stream("SELECT envelope FROM readings"):
                sha(b"\x00" + envelope).digest()
                count += 1
            return count

        hashed, floor_s = timed(floor)
        floor_rate = hashed / floor_s
        print(
            f"SHA-256 floor over the same envelopes (read from the store, hashed in a "
            f"hashlib loop): {floor_rate:.0f}/s; audit is {rate / floor_rate:.0%} of it "
            "(target >= 40%)"
        )
    print(json.dumps({"audit_per_s": round(rate), "floor_per_s": round(floor_rate)}))


if __name__ == "__main__":
    main()
