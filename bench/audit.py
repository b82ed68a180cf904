"""Auditor speed on a big store: export, bundle size, verify, and audit throughput.

Run: .venv/bin/python bench/audit.py [--readings 10000000] [--batch 1000] [--dir DIR]
         [--rounds 3] [--audit-only] [--no-parsed]

It builds the store without MQTT, through the gateway's own decoder, anchorer and
store (the same code ``anchorgate run`` uses), reusing it on later runs of the same
size. Its JSON payloads are in the reference layout (what the simulators send), which
the audit checks by comparing bytes; the audit rounds run again with the query for
payloads in any other layout, which parses them (``reference=False``), to show that
case on the same store. Figures (targets from the auditor issue):

- export of a bundle for one reading, and for one device's day of readings;
- the size of the one-reading bundle (target: under 4 KiB);
- the time to verify each bundle;
- ``audit`` throughput in readings per second, beside the same run's floor: SHA-256
  over the same envelope bytes (0x00 || envelope, the leaf hashes), read from the store
  and hashed in a plain hashlib loop in one process (target: at least 40%).

The floor is the faster of two ways to read the envelopes: DB-API tuples (DuckDB
fetches ahead on its own threads meanwhile) and Arrow batches (less CPU per row) of the
audit's own batch size (8,192 readings: with 65,536 the floor was 5-10% slower, its
memory faulted in again for each batch).
Audit and floor alternate ``--rounds`` times, each ratio taken within its round, so
that other work on the machine weighs on both alike; the spread is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from gateway.anchor import Accepted, Anchorer
from gateway.audit import BATCH_READINGS, audit_store
from gateway.audit_parallel import audit_file
from gateway.config import LimitsSection, StoreSection
from gateway.decode import Decoder
from gateway.proofs import export_bundle
from gateway.reader import ReadingRef, Selection, StoreReader
from gateway.readings import TemperatureReading, encode_reading, topic_for
from gateway.store import Store
from ledger import PublicKey, SigningKey, dumps_bundle, verify_bundle

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


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measured(fn: Callable[[], T]) -> tuple[T, float, float]:
    """fn's result, wall seconds and CPU seconds."""
    cpu = cpu_seconds()
    result, seconds = timed(fn)
    return result, seconds, cpu_seconds() - cpu


def floor_tuples(path: Path) -> int:
    """SHA-256 of 0x00 || envelope for every stored reading, read as DB-API tuples."""
    count = 0
    sha = hashlib.sha256
    with StoreReader.open(path) as reader:
        for (envelope,) in reader.stream("SELECT envelope FROM readings"):
            sha(b"\x00" + envelope).digest()
            count += 1
    return count


def floor_arrow(path: Path) -> int:
    """The same hashes, the envelopes read in Arrow batches."""
    count = 0
    sha = hashlib.sha256
    con = duckdb.connect(str(path), read_only=True)
    try:
        for batch in con.sql("SELECT envelope FROM readings").to_arrow_reader(BATCH_READINGS):
            for envelope in batch.column(0).to_pylist():
                sha(b"\x00" + envelope).digest()
            count += batch.num_rows
    finally:
        con.close()
    return count


def warm(path: Path) -> None:
    """Read the store file once, so that neither audit nor floor pays for a cold page cache.

    Without it the first round's audit, which runs first, read the file from disk and
    the floor after it from memory: its ratio came out 3-4 points lower than the others'.
    """
    with path.open("rb") as file:
        while file.read(1 << 24):
            pass


def store_at(directory: Path, readings: int, batch: int) -> Path:
    """The store of this size in ``directory``, built first if missing."""
    path = directory / f"store-{readings}-{batch}.duckdb"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        print(f"building {path} ...")
        _, seconds = timed(lambda: build(partial, readings, batch))
        partial.rename(path)
        print(f"built in {seconds:.1f} s")
    print(f"store: {path} ({path.stat().st_size / 1e6:.0f} MB, {readings} readings)")
    return path


def audit_rounds(path: Path, rounds: int, reference: bool | None = None) -> dict[str, float]:
    """Audit and floor, alternately; the figures of the median round by ratio.

    ``reference``: audit_file's choice of reading query (None: its own, from a sample).

    Beside the wall-clock ratio it prints CPU time per reading, which other work on the
    machine does not change, and the ratio it implies with the audit's processes each
    on a core of their own.
    """
    key = SigningKey.from_seed(SEED).public_key
    workers = os.cpu_count() or 1
    results = []
    for n in range(rounds):
        audit, audit_s, audit_cpu = measured(
            lambda: audit_file(path, key, workers=workers, reference=reference)
        )
        assert audit.ok, audit.problems[:3]
        count = audit.readings
        rate = count / audit_s
        tuples, tuples_s, tuples_cpu = measured(lambda: floor_tuples(path))
        arrow, arrow_s, arrow_cpu = measured(lambda: floor_arrow(path))
        assert tuples == arrow == count
        floor = max(count / tuples_s, count / arrow_s)
        floor_cpu = min(tuples_cpu, arrow_cpu) / count
        results.append(
            {
                "audit_per_s": rate,
                "floor_per_s": floor,
                "ratio": rate / floor,
                "audit_cpu_us": audit_cpu / count * 1e6,
                "floor_cpu_us": floor_cpu * 1e6,
            }
        )
        print(
            f"round {n + 1}: audit, {workers} processes: {count} readings in {audit_s:.1f} s "
            f"= {rate:.0f}/s; SHA-256 floor (one process, hashlib over the same envelopes "
            f"read from the store): tuples {count / tuples_s:.0f}/s, Arrow "
            f"{count / arrow_s:.0f}/s; audit is {rate / floor:.1%} of the faster. CPU per "
            f"reading: audit {audit_cpu / count * 1e6:.2f} us, floor {floor_cpu * 1e6:.2f} us",
            flush=True,
        )
    ratios = sorted(r["ratio"] for r in results)
    print(
        f"audit / floor over {rounds} round(s): median {statistics.median(ratios):.1%}, "
        f"min {ratios[0]:.1%}, max {ratios[-1]:.1%} (target >= 40%)"
    )
    cpu = statistics.median(r["audit_cpu_us"] for r in results)
    floor_cpu = statistics.median(r["floor_cpu_us"] for r in results)
    print(
        f"CPU per reading, medians: audit {cpu:.2f} us, floor {floor_cpu:.2f} us; with "
        f"{workers} idle cores the audit would reach {workers * floor_cpu / cpu:.0%} of the floor"
    )
    return sorted(results, key=lambda r: r["ratio"])[(len(results) - 1) // 2]


def exports(path: Path, key: PublicKey) -> None:
    """Export and verify one reading and one device's day; audit in one process.

    The day is exported twice: by a reader of its own, and within the running gateway's
    DuckDB memory (the read API's case).
    """
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
    # The read API exports inside the running gateway, whose DuckDB keeps to the store's
    # memory_limit (24MB by default) on one thread.
    gateway_store = StoreSection()
    with StoreReader.open(
        path, threads=gateway_store.threads, memory_limit=gateway_store.memory_limit
    ) as reader:
        within, seconds = timed(lambda: export_bundle(reader, day))
        print(
            f"export the same day within the gateway's DuckDB memory "
            f"({gateway_store.memory_limit}, {gateway_store.threads} thread): "
            f"{within.readings} readings in {seconds:.2f} s"
        )
    with StoreReader.open(path) as reader:
        audit, audit_s = timed(lambda: audit_store(reader, key))
        assert audit.ok, audit.problems[:3]
        one_rate = audit.readings / audit_s
        print(
            f"audit, one process: {audit.readings} readings, {audit.blocks} blocks in "
            f"{audit_s:.1f} s = {one_rate:.0f} readings/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/anchorgate-bench-audit"))
    parser.add_argument("--rounds", type=int, default=3, help="audit and floor runs")
    parser.add_argument("--audit-only", action="store_true", help="skip export and verify")
    parser.add_argument(
        "--no-parsed", action="store_true", help="skip the rounds that parse every payload"
    )
    args = parser.parse_args()
    path = store_at(args.dir, args.readings, args.batch)
    key = SigningKey.from_seed(SEED).public_key

    if not args.audit_only:
        exports(path, key)
    warm(path)
    median = audit_rounds(path, args.rounds)
    print(json.dumps({name: round(value, 3) for name, value in median.items()}))
    if not args.no_parsed:
        print("the same, read as payloads in any other layout are (parsed, not compared):")
        median = audit_rounds(path, args.rounds, reference=False)
        print(json.dumps({name: round(value, 3) for name, value in median.items()}))


if __name__ == "__main__":
    main()
