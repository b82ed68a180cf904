"""The audit checks that every alert points at a stored reading of its device."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import duckdb

from gateway.alerts import Thresholds
from gateway.anchor import Accepted, Anchorer
from gateway.audit import audit_store
from gateway.config_load import parse_config
from gateway.reader import StoreReader
from gateway.readings import TemperatureReading, encode_reading
from gateway.store import Store
from ledger import SigningKey

KEY = SigningKey.from_seed(bytes(range(32)))


def make(path: Path) -> None:
    section = parse_config(
        '[alerts.kinds.shipment]\nasset_prefixes = ["reefer-"]\ncelsius_min = 2.0\n'
        "celsius_max = 8.0\n",
        environ={},
    ).alerts
    thresholds = Thresholds(section)
    now_ns = time.time_ns()
    clock = itertools.count(now_ns + 10**9, 1000)
    store = Store.open(path)
    anchorer = Anchorer(
        store,
        KEY,
        "gw-alerts-audit",
        duplicate_window_ns=10**12,
        clock=lambda: next(clock),
        thresholds=thresholds,
    )
    items = []
    for seq, celsius in enumerate([5.0, 11.0, 4.0, 1.0]):
        reading = TemperatureReading("t-1", seq, now_ns // 1_000_000, celsius, "reefer-1")
        payload = encode_reading(reading)
        items.append(Accepted("sensors/t-1/temperature", payload, now_ns + seq, reading, "json"))
    anchorer.commit(items)
    store.close()


def test_an_alert_moved_off_its_reading_is_found(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    make(path)
    with StoreReader.open(path) as reader:
        assert audit_store(reader, KEY.public_key).ok
        assert reader.one("SELECT count(*) FROM alerts") == (2,)
    con = duckdb.connect(str(path))
    con.execute("UPDATE alerts SET leaf_index = 42 WHERE leaf_index = 1")
    con.close()
    with StoreReader.open(path) as reader:
        report = audit_store(reader, KEY.public_key)
    assert not report.ok
    assert [p.table for p in report.problems] == ["alerts"]
    assert "reading 0:42" in report.problems[0].reason
