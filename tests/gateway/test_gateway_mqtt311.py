"""The gateway with ``[mqtt] protocol = "3.1.1"``: against real Mosquitto and the demo's broker.

On Mosquitto: the gateway connects as an MQTT 3.1.1 client with a kept session
(``clean_session=false``, from ``session_expiry > 0``); readings it received but had
not acknowledged when it was killed are redelivered, and readings published while it
was away are queued for it; the store ends with every published reading, once.

On the embedded amqtt broker (``anchorgate demo`` without Mosquitto): readings arrive
at QoS 1 and are stored and anchored, and alerts are published through it to a plain
MQTT 3.1.1 subscriber. The config key itself is checked too.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from gateway_helpers import (  # noqa: F401 (reap_gateways is an autouse fixture)
    GatewayProcess,
    load,
    publish_all,
    published_keys,
    readings,
    reap_gateways,
    verify_store,
    wait_for,
    wait_quiet,
    write_config,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.config_load import parse_config
from gateway.embedded_broker import EmbeddedBroker
from gateway.errors import ConfigError
from gateway.mosquitto import Mosquitto
from gateway.readings import TemperatureReading, encode_reading, topic_for


def write_config_311(directory: Path, broker: Mosquitto | EmbeddedBroker, **options: Any) -> Path:
    # write_config reads only the broker's host and port.
    path = write_config(directory, cast(Mosquitto, broker), **options)
    text = path.read_text().replace("[mqtt]\n", '[mqtt]\nprotocol = "3.1.1"\n', 1)
    path.write_text(text)
    assert load(path).mqtt.protocol == "3.1.1"
    return path


class Client311:
    """A plain paho MQTT 3.1.1 client: QoS 1 publishes acknowledged, messages collected."""

    def __init__(self, broker: Mosquitto | EmbeddedBroker, client_id: str) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.messages: list[tuple[str, int, bytes]] = []
        self._lock = threading.Lock()
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("the MQTT 3.1.1 client did not connect")

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.qos, bytes(message.payload)))

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic_filter, qos=1)
        if not done.wait(10):
            raise RuntimeError("no SUBACK")

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    def received(self) -> list[tuple[str, int, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_protocol_key_is_checked() -> None:
    assert parse_config("").mqtt.protocol == "5"
    assert parse_config('[mqtt]\nprotocol = "3.1.1"').mqtt.protocol == "3.1.1"
    with pytest.raises(ConfigError, match=r"mqtt\.protocol: '3' is not one of '5', '3\.1\.1'"):
        parse_config('[mqtt]\nprotocol = "3"')


@pytest.mark.broker
def test_mqtt311_session_redelivers_and_queues_on_mosquitto(
    tmp_path: Path, broker: Mosquitto
) -> None:
    # A long batch delay: what the gateway has received stays unacknowledged a while.
    config = write_config_311(tmp_path / "gw", broker, max_readings=1000, max_delay=30.0)
    client_id = load(config).client_id
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    gateway.wait_connected()
    # p2: protocol level 4 (3.1.1) as Mosquitto logs it; c0: the session is kept.
    assert f"as {client_id} (p2, c0," in broker.log()

    first = readings(5, 100)
    publish_all(broker, first)
    wait_for(gateway, readings_in=100, stored=0)
    gateway.kill()  # received, not committed, not acknowledged
    deadline = time.monotonic() + 10
    while f"Client {client_id} closed its connection" not in broker.log():
        assert time.monotonic() < deadline, broker.log()
        time.sleep(0.02)
    second = readings(5, 100, start_seq=20)
    publish_all(broker, second)  # queued by the broker for the absent gateway

    gateway = GatewayProcess(config, tmp_path / "gateway2.log")
    gateway.wait_connected()
    assert "session_present=True" in gateway.log()
    # 100 redelivered and 100 queued; the batch commits when the gateway stops.
    wait_for(gateway, readings_in=200, duplicates=0)
    assert gateway.terminate() == 0, gateway.log()
    assert sorted(verify_store(config)) == sorted(published_keys(first + second))


@pytest.mark.broker
def test_gateway_on_the_embedded_broker_stores_and_publishes_alerts(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "broker") as broker:
        config = write_config_311(tmp_path / "gw", broker, max_readings=50)
        gateway = GatewayProcess(config, tmp_path / "gateway.log")
        gateway.wait_connected()
        assert 'granted="Granted QoS 1"' in gateway.log()
        listener = Client311(broker, "alert-listener")
        listener.subscribe("alerts/#")
        now_ms = time.time_ns() // 1_000_000
        hot = [TemperatureReading("rf-1", n, now_ms, 9.0 + n, "reefer-1") for n in range(3)]
        messages = readings(4, 120) + [
            (topic_for(r.device_id, r.kind), encode_reading(r)) for r in hot
        ]
        publisher = Client311(broker, "readings-publisher")
        try:
            publisher.publish(messages)
            wait_quiet(gateway, quiet=1.0)
            deadline = time.monotonic() + 20
            while len(listener.received()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            publisher.close()
            listener.close()
        assert gateway.terminate() == 0, gateway.log()
    assert sorted(verify_store(config)) == sorted(published_keys(messages))
    alerts = listener.received()
    assert [(topic, qos) for topic, qos, _ in alerts] == [("alerts/reefer-1", 1)] * 3
    values = sorted(json.loads(payload)["value"] for _, _, payload in alerts)
    assert values == [9.0, 10.0, 11.0]
    assert "alert.unpublished" not in gateway.log()
