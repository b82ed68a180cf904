"""Fixtures shared by every test package: a real Mosquitto broker on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.mosquitto import Mosquitto

MosquittoFactory = Callable[..., Mosquitto]


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """Start brokers with extra config lines; all are stopped at the end of the test."""
    started: list[Mosquitto] = []

    def start(*extra_config: str, persistence: bool = True, name: str = "broker") -> Mosquitto:
        broker = Mosquitto(tmp_path / name, persistence=persistence, extra_config=extra_config)
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(mosquitto_factory: MosquittoFactory) -> Mosquitto:
    """A fresh Mosquitto on 127.0.0.1 at a free port, with persistence and no queue limits."""
    return mosquitto_factory()
