"""Against a real Mosquitto: what a plain subscriber sees matches the manifest exactly."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiomqtt
import msgpack
import pytest
from sim_helpers import scenario

from gateway.mosquitto import Mosquitto
from simulators.errors import PublishError
from simulators.faults import FAULT_KINDS
from simulators.manifest import Manifest
from simulators.runner import new_manifest, run_scenario
from simulators.scenario import Scenario

pytestmark = pytest.mark.broker

Received = list[tuple[str, bytes]]


async def watch(broker: Mosquitto, received: Received, ready: asyncio.Event) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="plain-subscriber") as client:
        await client.subscribe("#", qos=1)
        ready.set()
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            received.append((message.topic.value, message.payload))


async def run_and_watch(
    sc: Scenario, broker: Mosquitto, pace: bool = True
) -> tuple[Manifest, Received]:
    received: Received = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch(broker, received, ready))
    await asyncio.wait_for(ready.wait(), 10)
    manifest = new_manifest(sc)
    await run_scenario(sc, manifest, pace=pace)
    for _ in range(500):
        if len(received) >= manifest.messages:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # anything beyond the manifest would have arrived by now
    watcher.cancel()
    return manifest, received


def decode(payload: bytes, fmt: str) -> dict[str, Any]:
    value = json.loads(payload) if fmt == "json" else msgpack.unpackb(payload)
    assert isinstance(value, dict)
    return value


def assert_matches_manifest(manifest: Manifest, received: Received) -> None:
    assert manifest.complete
    assert len(received) == manifest.messages
    # Bad and repeated messages are known by topic and digest; the rest must be genuine.
    expected_faults = Counter(
        (e["topic"], e["sha256"]) for e in manifest.fault_log if "sha256" in e
    )
    seqs: dict[str, list[int]] = defaultdict(list)
    per_device: Counter[str] = Counter()
    for topic, payload in received:
        device_id = topic.split("/")[1]
        per_device[device_id] += 1
        key = (topic, hashlib.sha256(payload).hexdigest())
        if expected_faults[key] > 0:
            expected_faults[key] -= 1
            continue
        reading = decode(payload, manifest.payload_format)
        assert reading["device_id"] == device_id
        seqs[device_id].append(reading["seq"])
    assert +expected_faults == Counter()  # every fault message arrived
    for device_id, record in manifest.devices.items():
        assert sorted(seqs[device_id]) == record.seq_list(), device_id
        assert per_device[device_id] == record.messages, device_id


def every_fault(every: float) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = [
        {"kind": kind, "start": 0.2, "every": every}
        for kind in FAULT_KINDS
        if kind not in ("burst", "disconnect")
    ]
    faults[7]["bytes"] = 5000  # oversized
    return [
        *faults,
        {"kind": "burst", "group": "hs", "start": 0.5, "every": 1.0, "size": 30},
        {"kind": "disconnect", "start": 0.7, "every": 0.8},
    ]


async def test_qos1_json_run_with_every_fault_matches_the_manifest(broker: Mosquitto) -> None:
    sc = scenario(
        duration=2.5,
        groups=[
            {"name": "hs", "model": "heat_sink", "count": 4, "interval": 0.05},
            {
                "name": "ship",
                "model": "shipment",
                "count": 2,
                "interval": 0.1,
                "route": "rotterdam-munich",
            },
        ],
        faults=every_fault(0.5),
        broker={"port": broker.port, "connections": 2},
        time_scale=60,
    )
    manifest, received = await run_and_watch(sc, broker)
    assert_matches_manifest(manifest, received)
    assert all(manifest.faults[kind] > 0 for kind in FAULT_KINDS)
    assert manifest.faults["disconnect"] == 3
    # The broker saw those connections end without an MQTT DISCONNECT.
    assert (
        len(re.findall(r"Client anchorgate-sim-\d(\.\d)? closed its connection", broker.log())) == 3
    )
    assert manifest.lag_ms["p99"] < 1000


async def test_qos0_msgpack_unpaced_run_matches_the_manifest(broker: Mosquitto) -> None:
    sc = scenario(
        duration=2,
        format="msgpack",
        qos=0,
        groups=[{"name": "tec", "model": "thermoelectric_module", "count": 100, "interval": 0.05}],
        faults=[{"kind": "truncated_msgpack", "every": 0.1}, {"kind": "disconnect", "every": 1}],
        broker={"port": broker.port, "connections": 3},
    )
    manifest, received = await run_and_watch(sc, broker, pace=False)
    assert manifest.readings == 100 * 40
    assert manifest.faults["disconnect"] == 2
    assert_matches_manifest(manifest, received)


def test_command_line_run_writes_the_manifest(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    out = tmp_path / "m.json"
    scenario_file = Path(__file__).parents[2] / "config" / "scenarios" / "demo.toml"
    code = main(
        [
            "simulate",
            "-s",
            str(scenario_file),
            "--port",
            str(broker.port),
            "--duration",
            "1.5",
            "--rate",
            "10",
            "--manifest",
            str(out),
            "--qos",
            "0",
        ]
    )
    assert code == 0
    line = capsys.readouterr().out
    assert line.startswith("published ")
    assert line.count("\n") == 1
    manifest = Manifest.from_json(out.read_text())
    assert manifest.complete
    assert manifest.qos == 0
    assert f"published {manifest.messages} messages" in line
    assert manifest.readings >= 10 * 10  # 10 devices at 10 reports/s for 1.5 s, trackers 2 each


@pytest.mark.parametrize("qos", [0, 1])
async def test_broker_dying_mid_run_is_a_publish_error_not_a_hang(
    broker: Mosquitto, qos: int
) -> None:
    sc = scenario(
        duration=30,
        qos=qos,
        groups=[{"name": "hs", "model": "heat_sink", "count": 50, "interval": 0.01}],
        broker={"port": broker.port},
    )
    manifest = new_manifest(sc)
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, broker.kill)
    started = loop.time()
    # QoS 0 fails on the next publish, QoS 1 on an unacknowledged one or the lost connection.
    one_line = r"^(lost the connection to the MQTT broker|publish .*failed: [^\n]*)$"
    with pytest.raises(PublishError, match=one_line):
        await run_scenario(sc, manifest)
    assert loop.time() - started < 5
    assert not manifest.complete
    assert manifest.messages > 0
