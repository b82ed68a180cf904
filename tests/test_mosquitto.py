"""The broker launcher itself: it starts, restarts on the same port and stops."""

from __future__ import annotations

import socket

import pytest

from gateway.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


def test_broker_listens_restarts_and_stops(broker: Mosquitto) -> None:
    with socket.create_connection((broker.host, broker.port), timeout=2):
        pass
    port = broker.port
    broker.restart()
    assert broker.port == port
    with socket.create_connection((broker.host, broker.port), timeout=2):
        pass
    broker.stop()
    assert not broker.running
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((broker.host, port), timeout=1),
    ):
        pass
