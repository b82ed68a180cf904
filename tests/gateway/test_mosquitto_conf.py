"""The shipped config/mosquitto.conf: Mosquitto accepts it and it sets the no-loss options."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_helpers import REPO, publish_all, readings

from gateway.mosquitto import Mosquitto, free_port

SHIPPED = REPO / "config" / "mosquitto.conf"


def settings() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in SHIPPED.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found.setdefault(name, value)
    return found


def test_sets_what_no_loss_needs() -> None:
    shipped = settings()
    assert shipped["persistence"] == "true"
    assert int(shipped["max_queued_messages"]) >= 1_000_000
    assert shipped["max_inflight_messages"] == "0"
    assert shipped["allow_anonymous"] == "false"


@pytest.mark.broker
def test_mosquitto_starts_with_it(tmp_path: Path) -> None:
    port = free_port()
    lines = []
    for line in SHIPPED.read_text().splitlines():
        if line.startswith(("listener", "persistence_location", "log_dest", "allow_anonymous")):
            continue
        lines.append(line)
    broker = Mosquitto(tmp_path / "b", port=port, extra_config=lines)
    broker.start()
    try:
        publish_all(broker, readings(1, 10))
    finally:
        broker.stop()
