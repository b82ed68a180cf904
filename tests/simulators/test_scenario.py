"""Scenario files: the shipped ones load; every mistake is one precise message."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.errors import ScenarioError
from simulators.scenario import apply_overrides, load_scenario

SCENARIOS = Path(__file__).parents[2] / "config" / "scenarios"

BASE = """
name = "t"
duration = 5
[[groups]]
name = "hs"
model = "heat_sink"
count = 2
interval = 1
[[groups]]
name = "ship"
model = "shipment"
count = 1
interval = 1
route = "rotterdam-munich"
"""


def test_demo_scenario_loads() -> None:
    scenario = load_scenario(SCENARIOS / "demo.toml")
    assert scenario.name == "demo"
    assert scenario.device_count == 10
    assert {g.model for g in scenario.groups} == {
        "heat_sink",
        "die_cast_housing",
        "thermoelectric_module",
        "shipment",
    }
    kinds = {f.kind for f in scenario.faults}
    assert len(kinds) == 13  # every fault kind once


def test_fleet_scenario_loads_with_its_route_file() -> None:
    scenario = load_scenario(SCENARIOS / "fleet.toml")
    assert scenario.device_count == 10_000
    assert {g.interval_s for g in scenario.groups} == {10.0}
    cn = next(g for g in scenario.groups if g.name == "cn")
    assert cn.route is not None
    assert cn.route.name == "shenzhen-hongkong"


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_scenario(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(("duration = 5", "duration = 0"), "'duration' must be more than 0", id="dur"),
        pytest.param(("duration = 5", 'duration = "5"'), "'duration' must be a number", id="type"),
        pytest.param(("duration = 5", ""), "missing 'duration'", id="missing"),
        pytest.param(('name = "t"', 'name = "t"\nspeed = 1'), "unknown key 'speed'", id="unknown"),
        pytest.param(
            ('model = "heat_sink"', 'model = "toaster"'),
            "groups[0]: 'model' must be one of heat_sink, die_cast_housing, "
            "thermoelectric_module, shipment, not 'toaster'",
            id="model",
        ),
        pytest.param(
            ("count = 2", "count = -1"), "groups[0]: 'count' must be at least 0", id="count"
        ),
        pytest.param(
            ('route = "rotterdam-munich"', 'route = "nowhere"'),
            "groups[1]: 'route' is wrong: unknown route 'nowhere'",
            id="route",
        ),
        pytest.param(
            ('route = "rotterdam-munich"', 'route = "missing.toml"'),
            "groups[1]: 'route' is wrong: route file",
            id="route-file",
        ),
        pytest.param(
            ('route = "rotterdam-munich"', 'route = "rotterdam-munich"\nduty_period = 5'),
            "groups[1]: unknown key 'duty_period'",
            id="component-key-on-shipment",
        ),
        pytest.param(
            ('name = "ship"', 'name = "hs"'), "groups[1]: 'name' 'hs' is used twice", id="dup-name"
        ),
        pytest.param(
            ('name = "t"', 'name = "t"\nqos = 3'), "'qos' must be at most 2, not 3", id="qos"
        ),
        pytest.param(
            ('name = "t"', 'name = "t"\nformat = "xml"'), "'format' must be one of json", id="fmt"
        ),
        pytest.param(
            ('name = "t"', 'name = "t"\ntopic_template = "s/{device_id}"'),
            "'topic_template' must contain {device_id} and {kind}",
            id="template",
        ),
        pytest.param(
            ('route = "rotterdam-munich"', 'route = "rotterdam-munich"\n[broker]\nport = 70000'),
            "[broker]: 'port' must be at most 65535",
            id="port",
        ),
        pytest.param(
            ('route = "rotterdam-munich"', 'route = "rotterdam-munich"\n[broker]\nhots = "x"'),
            "[broker]: unknown key 'hots'",
            id="b",
        ),
    ],
)
def test_bad_scenarios_name_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in BASE
    with pytest.raises(ScenarioError) as info:
        load(tmp_path, BASE.replace(old, new, 1))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "s.toml"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        pytest.param(
            '[[faults]]\nkind = "gremlins"\nevery = 1',
            "faults[0]: 'kind' must be one of malformed_json",
            id="fault-kind",
        ),
        pytest.param(
            '[[faults]]\nkind = "duplicate"',
            "faults[0]: give exactly one of 'every' or 'probability'",
            id="fault-when",
        ),
        pytest.param(
            '[[faults]]\nkind = "duplicate"\nevery = 1\nprobability = 0.1',
            "faults[0]: give exactly one of 'every' or 'probability'",
            id="fault-both",
        ),
        pytest.param(
            '[[faults]]\nkind = "duplicate"\nprobability = 2',
            "faults[0]: 'probability' must be at most 1.0",
            id="fault-probability",
        ),
        pytest.param(
            '[[faults]]\nkind = "replay"\nevery = 1\nstart = 3\nstop = 2',
            "faults[0]: 'stop' must be after start (3)",
            id="fault-window",
        ),
        pytest.param(
            '[[faults]]\nkind = "burst"\nevery = 1\nbytes = 10',
            "faults[0]: unknown key 'bytes'",
            id="fault-param",
        ),
        pytest.param(
            '[[faults]]\nkind = "burst"\nevery = 1\ngroup = "nope"',
            "faults[0]: 'group' must be one of hs, ship, not 'nope'",
            id="fault-group",
        ),
        pytest.param(
            '[[events]]\nkind = "fan_failure"\ngroup = "ship"\nat = 1',
            "events[0]: 'kind' 'fan_failure' does not apply to shipment group 'ship': "
            "use reefer_failure or door_open",
            id="event-model",
        ),
        pytest.param(
            '[[events]]\nkind = "door_open"\ngroup = "ship"', "events[0]: missing 'at'", id="at"
        ),
    ],
)
def test_bad_faults_and_events_name_the_field(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load(tmp_path, BASE + table)
    assert message in str(info.value)


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load(tmp_path, "name = ")


def test_overrides_spread_devices_and_set_rate_and_broker() -> None:
    scenario = load_scenario(SCENARIOS / "fleet.toml")
    changed = apply_overrides(
        scenario, devices=999, rate=4.0, duration=2.5, seed=9, qos=0, port=11883, host=None
    )
    assert changed.device_count == 999
    assert [g.count for g in changed.groups] == [399, 300, 200, 40, 30, 30]  # largest remainders
    assert {g.interval_s for g in changed.groups} == {0.25}
    assert (changed.duration_s, changed.seed, changed.qos) == (2.5, 9, 0)
    assert changed.broker.port == 11883
    assert changed.broker.host == scenario.broker.host


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"devices": 0}, "--devices must be at least 1", id="devices"),
        pytest.param({"rate": 0.0}, "--rate must be more than 0", id="rate"),
        pytest.param({"rate": float("nan")}, "--rate must be more than 0", id="rate-nan"),
        pytest.param({"duration": -1.0}, "--duration must be more than 0", id="duration"),
    ],
)
def test_bad_overrides(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        apply_overrides(load_scenario(SCENARIOS / "demo.toml"), **kwargs)  # type: ignore[arg-type]
