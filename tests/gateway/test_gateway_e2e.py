"""The gateway end to end: a real Mosquitto, a real gateway process, real DuckDB files.

The issue's tests 1 to 6: bulk ingest, SIGKILL crashes, a broker restart, bad input,
two instances on a shared subscription, and SIGTERM with a half-full batch.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from gateway_cases import bad_inputs
from gateway_helpers import (
    CuttableProxy,
    GatewayProcess,
    Publisher,
    finish,
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

from gateway.mosquitto import Mosquitto
from gateway.store import Store

pytestmark = pytest.mark.broker
__all__ = ["reap_gateways"]  # the autouse fixture, imported so that pytest finds it


def start(config: Path, name: str = "gateway") -> GatewayProcess:
    gateway = GatewayProcess(config, config.parent / f"{name}.log")
    gateway.wait_connected()
    return gateway


def assert_exactly(
    stored: list[tuple[str, str, int | None]], published: list[tuple[str, str, int | None]]
) -> None:
    duplicates = [key for key, n in Counter(stored).items() if n > 1]
    assert not duplicates, f"stored twice: {duplicates[:5]}"
    missing = set(published) - set(stored)
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:5]}"
    assert set(stored) == set(published)


@pytest.mark.slow
def test_50_devices_20000_readings_all_stored_anchored_and_verified(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "gw", broker, max_readings=1000, max_delay=0.5)
    gateway = start(config)
    messages = readings(devices=50, count=20_000)
    publish_all(broker, messages)
    health = wait_for(gateway, stored=20_000, queue_depth=0)
    assert gateway.terminate() == 0
    assert health["rejects"] == health["duplicates"] == 0
    assert_exactly(verify_store(config), published_keys(messages))
    with Store.open(load(config).store.path) as store:
        assert store.counts().blocks >= 20
        assert store.query("SELECT count(DISTINCT device_id) FROM readings") == [(50,)]


@pytest.mark.slow
def test_sigkill_three_times_during_publish_loses_nothing_and_stores_nothing_twice(
    broker: Mosquitto, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    config = write_config(tmp_path / "gw", broker, max_readings=500, max_delay=0.2)
    messages = readings(devices=50, count=50_000)
    gateway = start(config, "run-0")
    publisher = Publisher(broker)
    done = threading.Event()

    def publish() -> None:
        publisher.publish(messages)
        done.set()

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        for run in range(1, 4):
            time.sleep(rng.uniform(0.3, 2.0))
            gateway.kill()
            gateway = start(config, f"run-{run}")
        thread.join(120)
        assert done.is_set(), f"publisher did not finish (seed {seed})"
        gateway = finish(gateway, len(messages))
    finally:
        publisher.close()
        if gateway.process.poll() is None:
            gateway.kill()
    assert_exactly(verify_store(config), published_keys(messages))


@pytest.mark.slow
def test_broker_restart_during_publish_loses_nothing(broker: Mosquitto, tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker, max_readings=500, max_delay=0.2)
    messages = readings(devices=20, count=10_000)
    gateway = start(config)
    publisher = Publisher(broker)
    publisher.client.reconnect_delay_set(1, 2)
    try:
        publisher.publish(messages[:4000], wait=False)
        time.sleep(0.3)
        broker.restart()
        publisher.publish(messages[4000:], wait=False)
        publisher.wait_acked(len(messages), timeout=60)
        wait_quiet(gateway, quiet=1.0)
        assert int(str(gateway.health()["connects"])) >= 2
        gateway = finish(gateway, len(messages))
    finally:
        publisher.close()
    assert_exactly(verify_store(config), published_keys(messages))


def test_bad_input_lands_in_rejects_with_its_reason_and_good_readings_around_it_are_stored(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "gw", broker)
    text = config.read_text().replace(
        'shared_group = ""', 'shared_group = ""\ntopics = ["sensors/+/+", "other/#"]'
    )
    config.write_text(text)
    gateway = start(config)
    bad = bad_inputs(time.time_ns() // 1_000_000)
    good = readings(devices=1, count=len(bad) + 1)
    mixed = [
        m for pair in zip(good, [(b.topic, b.payload) for b in bad], strict=False) for m in pair
    ]
    mixed.append(good[-1])
    publish_all(broker, mixed)
    wait_for(gateway, stored=len(good), rejects=len(bad), queue_depth=0)
    assert gateway.terminate() == 0
    assert_exactly(verify_store(config), published_keys(good))
    with Store.open(load(config).store.path) as store:
        rejected = {
            (t, bytes(p)): (f, r)
            for t, p, f, r in store.query("SELECT topic, payload, field, reason FROM rejects")
        }
    assert len(rejected) == len(bad)
    limits = load(config).limits
    for case in bad:
        # A reject keeps no more of the message than a reading may hold.
        kept = (case.topic[: limits.max_topic_bytes], case.payload[: limits.max_payload_bytes])
        field, reason = rejected[kept]
        assert field == case.field, f"{case.id}: {field}: {reason}"
        assert reason, case.id


@pytest.mark.slow
def test_two_instances_on_a_shared_group_store_every_reading_exactly_once(
    broker: Mosquitto, tmp_path: Path
) -> None:
    configs = [
        write_config(tmp_path / name, broker, gateway_id=name, shared_group="ingest", max_delay=0.2)
        for name in ("gw-a", "gw-b")
    ]
    gateways = [start(config) for config in configs]
    messages = readings(devices=20, count=10_000)
    publish_all(broker, messages)
    deadline = time.monotonic() + 60
    while sum(int(str(g.health().get("stored", 0))) for g in gateways) < len(messages):
        assert time.monotonic() < deadline, [g.health() for g in gateways]
        time.sleep(0.1)
    assert [gateway.terminate() for gateway in gateways] == [0, 0]
    stored = [verify_store(config) for config in configs]  # each chain is valid on its own
    assert all(len(share) > 1000 for share in stored), [len(share) for share in stored]
    assert not set(stored[0]) & set(stored[1])
    assert_exactly(stored[0] + stored[1], published_keys(messages))


def test_sigterm_with_a_half_full_batch_commits_and_acks_before_exit(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "gw", broker, max_readings=1000, max_delay=60)
    gateway = start(config)
    messages = readings(devices=5, count=300)
    publish_all(broker, messages)
    health = wait_for(gateway, readings_in=300)
    assert health["stored"] == 0  # the batch is still open
    started = time.monotonic()
    assert gateway.terminate() == 0
    assert time.monotonic() - started < 5
    assert gateway.health()["state"] == "stopped"
    assert_exactly(verify_store(config), published_keys(messages))
    # Everything was acked: a new session receives nothing.
    again = start(config, "again")
    time.sleep(1.0)
    assert again.health().get("readings_in") == 0
    assert again.terminate() == 0


@pytest.mark.slow
def test_network_cuts_during_ingest_lose_nothing(broker: Mosquitto, tmp_path: Path) -> None:
    proxy = CuttableProxy(broker)
    config = write_config(tmp_path / "gw", broker, max_readings=500, max_delay=0.2)
    config.write_text(config.read_text().replace(f"port = {broker.port}", f"port = {proxy.port}"))
    messages = readings(devices=20, count=10_000)
    gateway = start(config)
    publisher = Publisher(broker)
    try:
        publisher.publish(messages, wait=False)
        for _ in range(3):
            time.sleep(0.4)
            proxy.cut()
        publisher.wait_acked(len(messages))
        wait_quiet(gateway, quiet=1.0)
        assert int(str(gateway.health()["connects"])) >= 2
        gateway = finish(gateway, len(messages))
    finally:
        publisher.close()
        proxy.close()
    assert_exactly(verify_store(config), published_keys(messages))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_the_broker_is_down_exits_promptly(
    broker: Mosquitto, tmp_path: Path, signum: signal.Signals
) -> None:
    config = write_config(tmp_path / "gw", broker)
    gateway = start(config)
    broker.stop()
    deadline = time.monotonic() + 10
    while gateway.health().get("connected") is not False:
        assert time.monotonic() < deadline, gateway.health()
        time.sleep(0.05)
    started = time.monotonic()
    gateway.process.send_signal(signum)
    assert gateway.wait(15) == 0
    assert time.monotonic() - started < 8
    assert "mqtt.disconnected" in gateway.log()
