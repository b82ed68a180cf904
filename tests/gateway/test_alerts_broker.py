"""Live alerts end to end: a gateway process, a real Mosquitto, a plain paho subscriber.

Readings that break each kind of threshold, and readings inside them, go through the
broker to ``anchorgate run``; a subscriber on ``alerts/#`` must receive exactly the
expected alerts, with the documented fields (docs/ALERTS.md), and the store's alerts
table must hold the same alerts, each referencing its anchored reading. The store
starts at schema version 1, as anchorgate wrote it before alerts, and is migrated on
start; the audit passes on the result.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gateway_helpers import (  # noqa: F401 (reap_gateways is an autouse fixture)
    GatewayProcess,
    Publisher,
    load,
    reap_gateways,
    verify_store,
    wait_quiet,
    write_config,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from test_subscriber import Running, config_for, eventually

from gateway.anchor import Accepted, Anchorer
from gateway.audit import audit_store
from gateway.mosquitto import Mosquitto
from gateway.reader import StoreReader
from gateway.readings import (
    LocationReading,
    Reading,
    TemperatureReading,
    encode_reading,
    topic_for,
)
from gateway.schema import MIGRATIONS
from gateway.store import Store
from ledger import SigningKey

pytestmark = pytest.mark.broker

ALERTS = """
[alerts]
enabled = true
topic_prefix = "alerts"
[alerts.kinds.shipment]
asset_prefixes = ["reefer-"]
celsius_min = 2.0
celsius_max = 8.0
regions = [{ name = "nl", lat_min = 50.7, lat_max = 53.6, lon_min = 3.3, lon_max = 7.3 }]
max_distance = { lat = 51.92, lon = 4.48, km = 300.0 }
[alerts.kinds.heat_sink]
asset_prefixes = ["hs-"]
celsius_max = 85.0
[alerts.kinds.die_cast_housing]
asset_prefixes = ["housing-"]
celsius_max = 85.0
[alerts.assets."reefer-frozen"]
celsius_min = -25.0
celsius_max = -18.0
[alerts.assets."rack-3/*"]
celsius_max = 60.0
"""

FIELDS = {
    "version", "alert_id", "gateway_id", "asset_id", "asset_kind", "rule", "kind", "value",
    "threshold", "unit", "device_id", "reading_kind", "block_height", "leaf_index", "ts_ms",
    "received_ns", "created_ns", "lat", "lon",
}  # fmt: skip


def scenario(now_ms: int) -> tuple[list[Reading], set[tuple[str, str, str, float, float]]]:
    """Readings inside and outside their thresholds; the alerts expected as
    (asset_id, device_id, kind, value, threshold)."""
    t = now_ms
    readings: list[Reading] = [
        TemperatureReading("rf-1", 1, t, 5.0, "reefer-1"),  # inside 2..8
        TemperatureReading("rf-1", 2, t, 1.0, "reefer-1"),  # low
        TemperatureReading("rf-1", 3, t, 9.5, "reefer-1"),  # high
        TemperatureReading("rf-1", 4, t, 8.0, "reefer-1"),  # at the bound: inside
        TemperatureReading("rf-f", 1, t, -20.0, "reefer-frozen"),  # inside its override
        TemperatureReading("rf-f", 2, t, 5.0, "reefer-frozen"),  # high for a frozen load
        TemperatureReading("hs-t", 1, t, 80.0, "hs-1"),
        TemperatureReading("hs-t", 2, t, 90.0, "hs-1"),  # high
        TemperatureReading("ho-t", 1, t, 86.5, "housing-1"),  # high
        TemperatureReading("psu-t", 1, t, 65.0, "rack-3/psu-1"),  # high (prefix override)
        TemperatureReading("pl-t", 1, t, 200.0, "pallet-1"),  # no kind, no override
        TemperatureReading("na-t", 1, t, 200.0),  # no asset
        LocationReading("rf-g", 1, t, 51.9, 4.5, asset_id="reefer-1"),  # Rotterdam: inside
        LocationReading("rf-g", 2, t, 52.37, 4.9, asset_id="reefer-2"),  # Amsterdam: inside
        LocationReading("rf-g", 3, t, 48.14, 11.58, asset_id="reefer-1"),  # Munich: both
        LocationReading("hs-g", 1, t, 0.0, 0.0, asset_id="hs-1"),  # no geofence for its kind
    ]
    expected = {
        ("reefer-1", "rf-1", "temperature_low", 1.0, 2.0),
        ("reefer-1", "rf-1", "temperature_high", 9.5, 8.0),
        ("reefer-frozen", "rf-f", "temperature_high", 5.0, -18.0),
        ("hs-1", "hs-t", "temperature_high", 90.0, 85.0),
        ("housing-1", "ho-t", "temperature_high", 86.5, 85.0),
        ("rack-3/psu-1", "psu-t", "temperature_high", 65.0, 60.0),
    }
    return readings, expected


class AlertListener:
    """A plain paho MQTT 5 client subscribed to ``alerts/#`` with QoS 1."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[tuple[str, int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="alert-listener",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_connect = lambda client, *_: client.subscribe("alerts/#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the alert listener did not subscribe")

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.qos, json.loads(message.payload)))

    def received(self) -> list[tuple[str, int, dict[str, Any]]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received())} of {count} alerts: {self.received()}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener(broker: Mosquitto) -> Iterator[AlertListener]:
    listening = AlertListener(broker)
    yield listening
    listening.close()


def write_version_1_store(config_path: Path) -> int:
    """A store as anchorgate wrote it before alerts (schema version 1), with one block."""
    config = load(config_path)
    key = SigningKey.load(config.gateway.key_file)
    with Store.open(config.store.path, migrations={1: MIGRATIONS[1]}) as store:
        anchorer = Anchorer(store, key, config.gateway.id, duplicate_window_ns=10**12)
        now_ns = time.time_ns()
        old = [
            TemperatureReading("old-dev", n, now_ns // 10**6, 30.0, "reefer-old") for n in (1, 2)
        ]
        items = [
            Accepted(topic_for(r.device_id, r.kind), encode_reading(r), now_ns, r, "json")
            for r in old
        ]
        outcome = anchorer.commit(items)  # 30 degrees, but v1 had no alerts
        assert store.schema_version() == 1
    return outcome.stored


def test_alerts_are_published_after_commit_and_recorded(
    tmp_path: Path, broker: Mosquitto, listener: AlertListener
) -> None:
    config_path = write_config(tmp_path / "gw", broker, max_readings=50, extra=ALERTS)
    before = write_version_1_store(config_path)
    gateway = GatewayProcess(config_path, tmp_path / "gateway.log")
    gateway.wait_connected()

    readings, expected_temperature = scenario(time.time_ns() // 1_000_000)
    publisher = Publisher(broker)
    try:
        publisher.publish([(topic_for(r.device_id, r.kind), encode_reading(r)) for r in readings])
    finally:
        publisher.close()
    listener.wait_for(8)
    wait_quiet(gateway, quiet=1.0)
    time.sleep(0.5)  # room for an alert too many to arrive
    assert gateway.terminate() == 0, gateway.log()

    received = listener.received()
    assert len(received) == 8, received
    for topic, qos, document in received:
        assert set(document) == FIELDS
        assert topic == f"alerts/{document['asset_id']}"
        assert qos == 1
        assert document["version"] == 1
        assert document["gateway_id"] == "gw-test"
        assert document["alert_id"] == (
            f"gw-test:{document['block_height']}:{document['leaf_index']}:{document['kind']}"
        )
    temperature = {
        (d["asset_id"], d["device_id"], d["kind"], d["value"], d["threshold"])
        for _, _, d in received
        if d["reading_kind"] == "temperature"
    }
    assert temperature == expected_temperature
    geofence = {
        d["kind"]: (d["asset_id"], d["rule"], d["unit"], d["lat"], d["lon"], d["threshold"])
        for _, _, d in received
        if d["reading_kind"] == "location"
    }
    assert geofence == {
        "outside_regions": ("reefer-1", "kind shipment", "km", 48.14, 11.58, 0.0),
        "too_far": ("reefer-1", "kind shipment", "km", 48.14, 11.58, 300.0),
    }
    by_kind = {d["kind"]: d for _, _, d in received if d["reading_kind"] == "location"}
    assert by_kind["too_far"]["value"] == pytest.approx(660, abs=5)
    assert 350 < by_kind["outside_regions"]["value"] < by_kind["too_far"]["value"]

    # The store: migrated to version 2, every alert in the table, referencing its reading.
    stored = verify_store(config_path)
    assert len(stored) == before + len(readings)
    config = load(config_path)
    with Store.open(config.store.path) as store:
        assert store.schema_version() == 2
        rows = store.query(
            "SELECT a.alert_id, a.asset_id, a.device_id, a.kind, a.value, a.threshold, "
            "r.asset_id, r.device_id, r.received_ns = a.received_ns "
            "FROM alerts a LEFT JOIN readings r USING (block_height, leaf_index)"
        )
    assert {row[0] for row in rows} == {d["alert_id"] for _, _, d in received}
    for _alert_id, asset, device, _kind, _value, _threshold, r_asset, r_device, same_ns in rows:
        assert (r_asset, r_device, same_ns) == (asset, device, True)
    key = SigningKey.load(config.gateway.key_file)
    with StoreReader.open(config.store.path) as reader:
        report = audit_store(reader, key.public_key)
    assert report.ok, report.to_json()
    health = json.loads(Path(str(config.health.file)).read_text())
    assert (health["alerts"], health["alerts_unpublished"]) == (8, 0)


def test_disabled_alerts_publish_and_record_nothing(
    tmp_path: Path, broker: Mosquitto, listener: AlertListener
) -> None:
    config_path = write_config(tmp_path / "gw", broker, extra="[alerts]\nenabled = false\n")
    gateway = GatewayProcess(config_path, tmp_path / "gateway.log")
    gateway.wait_connected()
    readings, _ = scenario(time.time_ns() // 1_000_000)
    publisher = Publisher(broker)
    try:
        publisher.publish([(topic_for(r.device_id, r.kind), encode_reading(r)) for r in readings])
    finally:
        publisher.close()
    wait_quiet(gateway, quiet=1.0)
    assert gateway.terminate() == 0, gateway.log()
    assert listener.received() == []
    with Store.open(load(config_path).store.path) as store:
        assert store.counts().readings == len(readings)
        assert store.query("SELECT count(*) FROM alerts") == [(0,)]


async def test_the_subscriber_publishes_while_connected_and_refuses_while_away(
    broker: Mosquitto, listener: AlertListener
) -> None:
    async with Running(config_for(broker)) as running:
        assert running.subscriber.publish("alerts/reefer-1", b'{"version":1}')
        await eventually(lambda: len(listener.received()) == 1)
        assert listener.received() == [("alerts/reefer-1", 1, {"version": 1})]
        assert not running.subscriber.publish("alerts/bad/#", b"{}")  # paho refuses wildcards
        await asyncio.to_thread(broker.stop)
        await eventually(lambda: not running.subscriber.metrics.connected)
        assert not running.subscriber.publish("alerts/reefer-1", b"{}")  # returns at once
