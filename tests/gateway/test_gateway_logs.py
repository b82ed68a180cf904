"""Structured logs and the health file."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from gateway.logs import LOGGER_NAME, configure, get_logger, log_event
from gateway.metrics import Metrics, write_health


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    yield None
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_text_logs_are_one_line_of_key_value_pairs() -> None:
    stream = io.StringIO()
    configure("info", "text", stream)
    log_event(get_logger("t"), logging.INFO, "batch.committed", height=3, reason="two words")
    log_event(get_logger("t"), logging.DEBUG, "hidden")
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert ' INFO batch.committed height=3 reason="two words"' in line


def test_json_logs_parse() -> None:
    stream = io.StringIO()
    configure("debug", "json", stream)
    log_event(get_logger("t"), logging.WARNING, "mqtt.retry", delay=0.5)
    document = json.loads(stream.getvalue())
    assert document["event"] == "mqtt.retry"
    assert document["level"] == "warning"
    assert document["delay"] == 0.5


def test_health_file_is_replaced_atomically(tmp_path: Path) -> None:
    metrics = Metrics(started_ns=0)
    metrics.received, metrics.acked = 10, 7
    metrics.record_batch([0, 500_000_000], 1_000_000_000, 0.01)
    path = tmp_path / "sub" / "health.json"
    write_health(path, metrics.snapshot(now_ns=2_000_000_000))
    health = json.loads(path.read_text())
    assert health["queue_depth"] == 3
    assert health["latency_s"] == {"p50": 1.0, "p99": 1.0, "max": 1.0}
    assert health["uptime_s"] == 2.0
    assert list(path.parent.iterdir()) == [path]
