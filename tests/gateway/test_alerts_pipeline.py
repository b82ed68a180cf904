"""Publishing alerts never blocks or breaks ingestion: after the commit, and best effort."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gateway_cases import NOW_MS, NOW_NS
from test_pipeline import from_list

from gateway.alerts import Alert, Thresholds
from gateway.anchor import Anchorer
from gateway.config import BatchSection, Config, LimitsSection
from gateway.config_load import parse_config
from gateway.decode import Decoder
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, RawMessage
from gateway.readings import TemperatureReading, encode_reading, topic_for
from gateway.service import _alert_publisher
from gateway.store import Store
from gateway.subscriber import Subscriber
from ledger import SigningKey

KEY = SigningKey.from_seed(bytes(range(32)))


def message(n: int) -> RawMessage:
    """Every third reading of reefer-1 is too warm (the default shipment band is 2-8)."""
    celsius = 12.0 if n % 3 == 0 else 5.0
    payload = encode_reading(TemperatureReading("rf-1", n, NOW_MS, celsius, "reefer-1"))
    return RawMessage(topic_for("rf-1", "temperature"), payload, NOW_NS + n, token=n)


def make(tmp_path: Path) -> tuple[Pipeline, Store, ThreadPoolExecutor]:
    store = Store.open(tmp_path / "p.duckdb")
    clock = itertools.count(NOW_NS + 10**9, 1000)
    anchorer = Anchorer(
        store,
        KEY,
        "gw-p",
        duplicate_window_ns=10**12,
        clock=lambda: next(clock),
        thresholds=Thresholds(Config().alerts),
    )
    executor = ThreadPoolExecutor(1)
    batch = BatchSection(max_readings=10, max_delay=60)
    pipeline = Pipeline(Decoder(LimitsSection()), anchorer, batch, Metrics(), executor)
    return pipeline, store, executor


async def test_alerts_are_published_after_their_batch_is_committed_and_acked(
    tmp_path: Path,
) -> None:
    pipeline, store, executor = make(tmp_path)
    events: list[tuple[str, int]] = []

    def ack(messages: Sequence[RawMessage]) -> None:
        events.append(("ack", len(messages)))

    def publish(alerts: Sequence[Alert]) -> None:
        # On the event loop, after the batch's commit; the writer waits for the next batch.
        in_table = store.query("SELECT count(*) FROM alerts")[0][0]
        assert {a.alert_id for a in alerts} <= {
            row[0] for row in store.query("SELECT alert_id FROM alerts")
        }
        events.append(("publish", in_table))

    await pipeline.run(from_list([message(n) for n in range(25)]), ack, publish)
    assert events == [
        ("ack", 10),
        ("publish", 4),  # readings 0, 3, 6, 9
        ("ack", 10),
        ("publish", 7),  # 12, 15, 18
        ("ack", 5),
        ("publish", 9),  # 21, 24
    ]
    assert pipeline.metrics.alerts == 9
    store.close()
    executor.shutdown()


async def test_a_failing_publish_does_not_stop_ingestion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, store, executor = make(tmp_path)
    acked: list[object] = []

    def publish(alerts: Sequence[Alert]) -> None:
        raise ConnectionError("broker away")

    with caplog.at_level(logging.INFO):
        await pipeline.run(
            from_list([message(n) for n in range(25)]),
            lambda messages: acked.extend(m.token for m in messages),
            publish,
        )
    assert acked == list(range(25))
    assert store.counts().readings == 25
    assert store.query("SELECT count(*) FROM alerts") == [(9,)]
    assert pipeline.metrics.alerts == 9
    assert "alert.publish_failed" in caplog.text
    assert "alert.raised" in caplog.text
    store.close()
    executor.shutdown()


def test_without_a_connection_alerts_are_counted_unpublished() -> None:
    config = parse_config("[mqtt]\nport = 1\n", environ={})
    metrics = Metrics()
    subscriber = Subscriber(config, metrics)
    assert subscriber.publish("alerts/x", b"{}") is False  # never connected
    thresholds = Thresholds(config.alerts)
    reading = TemperatureReading("rf-1", 1, NOW_MS, 20.0, "reefer-1")
    alerts = thresholds.alerts("gw", reading, 0, 0, NOW_NS, NOW_NS)
    _alert_publisher(config, subscriber, metrics)(alerts * 3)
    assert metrics.alerts_unpublished == 3
    assert metrics.snapshot()["alerts_unpublished"] == 3


def test_the_demo_table_shows_the_alerts_counter() -> None:
    from rich.console import Console

    from gateway.demo import _table

    metrics = Metrics()
    metrics.alerts = 17
    console = Console(record=True, width=100)
    console.print(_table({"live": metrics.snapshot()}, 3.0, 30.0))
    line = next(row for row in console.export_text().splitlines() if "alerts" in row)
    assert "17" in line
