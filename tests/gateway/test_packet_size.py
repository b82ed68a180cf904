"""mqtt.max_packet_bytes: the broker keeps messages too large to hold from the gateway."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gateway_helpers import (
    GatewayProcess,
    load,
    publish_all,
    readings,
    reap_gateways,
    wait_for,
    write_config,
)

from gateway.config_load import parse_config
from gateway.errors import ConfigError
from gateway.mosquitto import Mosquitto
from gateway.store import Store

__all__ = ["reap_gateways"]  # the autouse fixture, imported so that pytest finds it


def _payload(size: int) -> bytes:
    """A temperature reading padded with an unknown field to ``size`` bytes."""
    now_ms = time.time_ns() // 1_000_000
    base = {"seq": 1, "ts": now_ms, "celsius": 5.0, "pad": ""}
    padding = size - len(json.dumps(base).encode())
    return json.dumps(base | {"pad": "x" * padding}).encode()


@pytest.mark.broker
def test_a_message_over_the_packet_size_never_reaches_the_gateway(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "gw", broker)
    config.write_text(
        config.read_text().replace(
            'shared_group = ""', 'shared_group = ""\nmax_packet_bytes = 8192'
        )
    )
    gateway = GatewayProcess(config, tmp_path / "gw" / "gateway.log")
    gateway.wait_connected()
    good = readings(devices=1, count=4)
    over_limit = ("sensors/big-1/temperature", _payload(6000))  # a reject, kept
    huge = ("sensors/big-2/temperature", _payload(200_000))  # dropped by the broker
    publish_all(broker, [good[0], over_limit, good[1], huge, good[2], good[3]])
    health = wait_for(gateway, stored=4, rejects=1, queue_depth=0)
    time.sleep(0.5)  # the huge one would have arrived by now
    health = gateway.health()
    assert (health["readings_in"], health["acked"]) == (5, 5)
    assert health["connects"] == 1  # still the first connection
    assert gateway.terminate() == 0
    with Store.open(load(config).store.path) as store:
        rows = store.query("SELECT topic, field, reason FROM rejects")
    assert [(topic, field) for topic, field, _ in rows] == [(over_limit[0], "payload")]
    assert "max_payload_bytes" in rows[0][2]


def test_a_packet_size_too_small_for_the_limits_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.max_packet_bytes \(4096\) must be at least"):
        parse_config("[mqtt]\nmax_packet_bytes = 4096", environ={})
    with pytest.raises(ConfigError, match=r"mqtt\.max_packet_bytes: must be between"):
        parse_config("[mqtt]\nmax_packet_bytes = 100", environ={})
    config = parse_config(
        "[mqtt]\nmax_packet_bytes = 2048\n[limits]\nmax_payload_bytes = 1024", environ={}
    )
    assert config.mqtt.max_packet_bytes == 2048
