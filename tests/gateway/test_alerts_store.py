"""Alerts in the store: written in the batch's transaction, referencing anchored readings.

Real DuckDB files through the gateway's own anchorer; schema version 1 stores (as
anchorgate wrote them before alerts) migrate to version 2 on open.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from gateway_cases import NOW_MS, NOW_NS

from gateway.alerts import Thresholds
from gateway.anchor import Accepted, Anchorer
from gateway.audit import audit_store
from gateway.chain_check import check_recent_blocks
from gateway.config_load import parse_config
from gateway.errors import StoreError
from gateway.reader import StoreReader
from gateway.readings import LocationReading, Reading, TemperatureReading, encode_reading
from gateway.schema import MIGRATIONS, SCHEMA_VERSION
from gateway.store import Store
from ledger import SigningKey

KEY = SigningKey.from_seed(bytes(range(32)))
GATEWAY_ID = "gw-alerts"
ALERTS = parse_config(
    """
[alerts.kinds.shipment]
asset_prefixes = ["reefer-"]
celsius_min = 2.0
celsius_max = 8.0
max_distance = { lat = 51.92, lon = 4.48, km = 100 }
""",
    environ={},
).alerts


def accepted(reading: Reading, offset: int) -> Accepted:
    return Accepted(
        f"sensors/{reading.device_id}/{reading.kind}",
        encode_reading(reading),
        NOW_NS + offset * 1_000_000,
        reading,
        "json",
    )


def batch(start: int) -> list[Accepted]:
    """Five readings of reefer-1: inside, too cold, too warm, near, far away."""
    readings: list[Reading] = [
        TemperatureReading("t-1", start, NOW_MS + start, 5.0, "reefer-1"),
        TemperatureReading("t-1", start + 1, NOW_MS + start + 1, 1.5, "reefer-1"),
        TemperatureReading("t-1", start + 2, NOW_MS + start + 2, 9.0, "reefer-1"),
        LocationReading("g-1", start, NOW_MS + start, 51.9, 4.5, asset_id="reefer-1"),
        LocationReading("g-1", start + 1, NOW_MS + start + 1, 48.1, 11.6, asset_id="reefer-1"),
    ]
    return [accepted(r, start + n) for n, r in enumerate(readings)]


def anchorer(store: Store, thresholds: Thresholds | None) -> Anchorer:
    clock = itertools.count(NOW_NS + 10**9, 1000)
    return Anchorer(
        store,
        KEY,
        GATEWAY_ID,
        duplicate_window_ns=3600 * 10**9,
        clock=lambda: next(clock),
        thresholds=thresholds,
    )


def audit_ok(path: Path) -> None:
    with StoreReader.open(path) as reader:
        report = audit_store(reader, KEY.public_key)
    assert report.ok, report.to_json()


def test_alerts_are_committed_with_their_readings_and_reference_them(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        outcome = anchorer(store, Thresholds(ALERTS)).commit(batch(0))
        assert outcome.height == 0
        assert [(a.kind, a.leaf_index) for a in outcome.alerts] == [
            ("temperature_low", 1),
            ("temperature_high", 2),
            ("too_far", 4),
        ]
        rows = store.query(
            "SELECT a.alert_id, a.kind, a.value, a.threshold, a.asset_kind, a.rule, "
            "a.device_id = r.device_id, a.asset_id = r.asset_id, a.received_ns = r.received_ns, "
            "a.created_ns = b.created_ns "
            "FROM alerts a JOIN readings r USING (block_height, leaf_index) "
            "JOIN blocks b ON b.height = a.block_height ORDER BY a.leaf_index"
        )
    assert rows[0] == (
        "gw-alerts:0:1:temperature_low", "temperature_low", 1.5, 2.0, "shipment",
        "kind shipment", True, True, True, True,
    )  # fmt: skip
    assert rows[1][1:4] == ("temperature_high", 9.0, 8.0)
    assert rows[2][1] == "too_far"
    assert rows[2][2] == pytest.approx(660, abs=5)  # Rotterdam to Munich: about 660 km
    assert len(rows) == 3
    audit_ok(path)


def test_duplicates_raise_no_second_alert(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        anchoring = anchorer(store, Thresholds(ALERTS))
        assert len(anchoring.commit(batch(0)).alerts) == 3
        again = anchoring.commit(batch(0))
        assert (again.stored, again.duplicates, again.alerts) == (0, 5, ())
        assert store.query("SELECT count(*) FROM alerts") == [(3,)]


def test_a_failed_commit_writes_neither_readings_nor_alerts(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        anchoring = anchorer(store, Thresholds(ALERTS))
        anchoring.commit(batch(0))
        store.query("ALTER TABLE alerts RENAME TO alerts_away")  # the alerts insert fails
        with pytest.raises(StoreError, match="commit a batch"):
            anchoring.commit(batch(10))
        assert store.counts().readings == 5
        store.query("ALTER TABLE alerts_away RENAME TO alerts")
        retried = anchoring.commit(batch(10))  # the same height again, with its alerts
        assert retried.height == 1
        assert store.query("SELECT block_height, count(*) FROM alerts GROUP BY 1 ORDER BY 1") == [
            (0, 3),
            (1, 3),
        ]
        assert check_recent_blocks(store, KEY, GATEWAY_ID, 10) == 2


def test_without_thresholds_no_alerts_are_written(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        assert anchorer(store, None).commit(batch(0)).alerts == ()
        assert store.query("SELECT count(*) FROM alerts") == [(0,)]


def test_a_version_1_store_migrates_to_version_2_and_keeps_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path, migrations={1: MIGRATIONS[1]}) as old:
        assert old.schema_version() == 1
        anchorer(old, None).commit(batch(0))
        tables = {row[0] for row in old.query("SELECT table_name FROM information_schema.tables")}
        assert "alerts" not in tables
    assert SCHEMA_VERSION == 2
    with Store.open(path) as store:
        assert store.schema_version() == 2
        assert store.query("SELECT count(*) FROM alerts") == [(0,)]
        assert store.counts().readings == 5
        assert check_recent_blocks(store, KEY, GATEWAY_ID, 10) == 1
        outcome = anchorer(store, Thresholds(ALERTS)).commit(batch(10))
        assert (outcome.height, len(outcome.alerts)) == (1, 3)
    audit_ok(path)
