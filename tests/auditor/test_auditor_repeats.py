"""A leaf in two blocks: proven absent by the signed receive times, or found by grouping."""

from __future__ import annotations

import itertools
from pathlib import Path

from auditor_store import GATEWAY_ID, T0_NS, make_store

from gateway.anchor import Accepted, Anchorer
from gateway.audit import audit_store
from gateway.audit_global import times_apart
from gateway.audit_parallel import audit_file
from gateway.config import LimitsSection
from gateway.decode import Decoder
from gateway.reader import StoreReader
from gateway.readings import TemperatureReading, encode_reading, topic_for
from gateway.store import Store
from ledger import SigningKey


def test_a_clean_store_is_proven_by_its_receive_times(tmp_path: Path) -> None:
    made = make_store(tmp_path / "clean")
    with StoreReader.open(made.path) as reader:
        assert times_apart(reader)
        assert audit_store(reader, made.key.public_key).ok


def test_a_leaf_the_gateway_itself_anchored_twice_is_found(tmp_path: Path) -> None:
    # A gateway bug, not an edit: the same envelope (same salt) sealed and signed in
    # blocks 0 and 2. Every block then verifies; only the store-wide check can tell,
    # and the receive times, which overlap, send the audit to it.
    key = SigningKey.from_seed(bytes(range(32)))
    path = tmp_path / "twice.duckdb"
    store = Store.open(path)
    clock = itertools.count(T0_NS + 10**12, 1_000_000)
    fresh = itertools.count(1)
    repeated_salt = bytes(16)

    def salts(n: int) -> list[bytes]:
        return [next(fresh).to_bytes(16, "big") for _ in range(n)]

    anchorer = Anchorer(store, key, GATEWAY_ID, duplicate_window_ns=0, clock=lambda: next(clock))
    decoder = Decoder(LimitsSection())

    def item(seq: int, received: int) -> Accepted:
        reading = TemperatureReading("reefer-9", seq, T0_NS // 1_000_000, 5.0)
        payload = encode_reading(reading)
        topic = topic_for("reefer-9", "temperature")
        return Accepted(topic, payload, received, decoder.decode(topic, payload, received), "json")

    anchorer._salts = lambda n: [repeated_salt, *salts(n - 1)]
    anchorer.commit([item(0, T0_NS), item(1, T0_NS + 1000)])
    anchorer._salts = salts
    anchorer.commit([item(2, T0_NS + 10**9)])
    anchorer._salts = lambda n: [repeated_salt, *salts(n - 1)]
    anchorer.commit([item(0, T0_NS), item(3, T0_NS + 2 * 10**9)])  # seq 0 again, same salt
    store.close()

    with StoreReader.open(path) as reader:
        assert not times_apart(reader)
        report = audit_store(reader, key.public_key)
    assert [(p.table, p.reason) for p in report.problems] == [
        ("readings", "the same leaf is stored 2 times")
    ]
    split = audit_file(path, key.public_key, workers=2, min_span=1)
    assert [p.reason for p in split.problems] == ["the same leaf is stored 2 times"]
