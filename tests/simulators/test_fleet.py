"""The fleet: seeded determinism, seq per device, schedule, clocks, manifest counts."""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict

import msgpack
import pytest
from sim_helpers import EPOCH_MS, scenario, simulate

from simulators.fleet import Outgoing, Simulation
from simulators.manifest import Manifest
from simulators.runner import new_manifest


def outgoing(sc_seed: int, **top: object) -> list[tuple[str, bytes]]:
    actions, _ = simulate(scenario(seed=sc_seed, **top))  # type: ignore[arg-type]
    return [(a.topic, a.payload) for a in actions if isinstance(a, Outgoing)]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert outgoing(5) == outgoing(5)
    assert outgoing(5) != outgoing(6)


def test_each_device_numbers_its_readings_from_zero_without_gaps() -> None:
    actions, manifest = simulate(scenario(time_scale=600))
    seqs: dict[str, list[int]] = defaultdict(list)
    for action in actions:
        assert isinstance(action, Outgoing)
        payload = json.loads(action.payload)
        _, device_id, kind = action.topic.split("/")
        assert payload["device_id"] == device_id
        assert kind in ("temperature", "location")
        assert payload["asset_id"] == device_id.rsplit("-", 1)[0]
        seqs[device_id].append(payload["seq"])
    assert set(seqs) == set(manifest.devices)
    for device_id, got in seqs.items():
        assert got == list(range(len(got)))
        assert manifest.devices[device_id].seqs == [[0, len(got) - 1]]
    assert manifest.messages == manifest.readings == len(actions)
    # Trackers lose some fixes (10 %): fewer location than temperature readings.
    tracker = manifest.devices["ship-00000-trk"]
    assert 0 < tracker.kinds["location"] < tracker.kinds["temperature"] == 10


def test_reports_follow_the_interval_and_device_clocks_are_skewed() -> None:
    sc = scenario(
        groups=[
            {"name": "hs", "model": "heat_sink", "count": 4, "interval": 2, "clock_skew_ms": 500}
        ],
        duration=20,
    )
    actions, _ = simulate(sc)
    by_device: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for action in actions:
        assert isinstance(action, Outgoing)
        by_device[action.topic].append((action.due, json.loads(action.payload)["ts"]))
    skews = set()
    for reports in by_device.values():
        assert len(reports) == 10
        for (due0, ts0), (due1, ts1) in itertools.pairwise(reports):
            assert due1 - due0 == pytest.approx(2.0)
            assert abs(ts1 - ts0 - 2000) <= 1
        due, ts = reports[0]
        skew = ts - (EPOCH_MS + round(due * 1000))
        assert -500 <= skew <= 500
        skews.add(skew)
    assert len(skews) == 4  # each device has its own clock


def test_ten_thousand_devices_each_report_once_per_interval() -> None:
    sc = scenario(
        groups=[
            {"name": "hs", "model": "heat_sink", "count": 9000, "interval": 10},
            {
                "name": "s",
                "model": "shipment",
                "count": 1000,
                "interval": 10,
                "route": "rotterdam-munich",
                "lost_fix_probability": 0.0,
            },
        ],
        duration=10,
    )
    actions, manifest = simulate(sc)
    assert manifest.readings == 9000 + 2 * 1000
    assert all(r.readings in (1, 2) for r in manifest.devices.values())
    dues = sorted(a.due for a in actions)
    # Phases spread over the interval: no second holds much more than its share.
    per_second = [sum(1 for d in dues if s <= d < s + 1) for s in range(10)]
    assert max(per_second) < 1.2 * len(dues) / 10


def test_events_change_the_physics_at_their_time() -> None:
    sc = scenario(
        groups=[{"name": "hs", "model": "heat_sink", "count": 2, "interval": 1}],
        events=[{"kind": "fan_failure", "group": "hs", "at": 10, "devices": 1}],
        duration=40,
        time_scale=60,
    )
    actions, manifest = simulate(sc)
    temps: dict[str, list[float]] = defaultdict(list)
    for action in actions:
        assert isinstance(action, Outgoing)
        temps[action.topic].append(json.loads(action.payload)["celsius"])
    failing, healthy = (
        temps["sensors/hs-00000-tmp/temperature"],
        temps["sensors/hs-00001-tmp/temperature"],
    )
    assert max(healthy) < 95.0  # the heat sink's rating
    assert max(failing) > 95.0
    assert manifest.events == [
        {"kind": "fan_failure", "device_id": "hs-00000-tmp", "at": 10.0, "until": None}
    ]


def test_msgpack_payloads_and_custom_topic_template() -> None:
    actions, _ = simulate(scenario(format="msgpack", topic_template="plant/{kind}/{device_id}"))
    first = actions[0]
    assert isinstance(first, Outgoing)
    assert first.topic.startswith("plant/")
    payload = msgpack.unpackb(first.payload)
    assert payload["seq"] == 0


def test_wall_clock_mode_stamps_readings_when_made() -> None:
    sc = scenario()
    clock = iter(range(EPOCH_MS, EPOCH_MS + 10**6, 7))
    manifest = new_manifest(sc)
    sim = Simulation(sc, rng=random.Random(1), ts_ms=lambda due: next(clock), manifest=manifest)
    actions = sim.take(3.0)
    stamps = [json.loads(a.payload)["ts"] for a in actions if isinstance(a, Outgoing)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) > 1


def test_manifest_round_trips_through_json() -> None:
    _, manifest = simulate(scenario(faults=[{"kind": "malformed_json", "every": 1}]))
    manifest.lag_ms = {"p50": 1.0}
    again = Manifest.from_json(manifest.to_json())
    assert again.to_dict() == manifest.to_dict()
    data = json.loads(manifest.to_json())
    assert data["totals"]["messages"] == data["totals"]["readings"] + 10
    assert data["faults"]["malformed_json"] == 10
    assert set(data["faults"]) >= {"disconnect", "burst", "replay"}
