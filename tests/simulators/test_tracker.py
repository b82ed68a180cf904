"""Shipment trackers: on route within GPS noise, never teleporting, cold chain profiles."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from simulators.errors import ScenarioError
from simulators.routes import (
    BUILTIN_ROUTES,
    Route,
    distance_m,
    distance_to_route_m,
    load_route,
    resolve_route,
)
from simulators.tracker import ShipmentModel

CONFIG = Path(__file__).parents[2] / "config"


def shipment(route: Route, seed: int = 1, **overrides: float | str) -> ShipmentModel:
    settings: dict[str, object] = {
        "speed_mps": 25.0,
        "stop_probability": 0.5,
        "start_s": 0.0,
        "gps_noise_m": 5.0,
        "lost_fix_probability": 0.0,
        "profile": "cold_chain",
        "setpoint_c": 5.0,
        "ambient_c": 25.0,
        "diurnal_c": 0.0,
        "noise_c": 0.0,
    }
    settings.update(overrides)
    return ShipmentModel(route, rng=random.Random(seed), **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("route", BUILTIN_ROUTES.values(), ids=list(BUILTIN_ROUTES))
def test_fixes_stay_on_route_and_never_teleport(route: Route) -> None:
    model = shipment(route)
    rng = random.Random(2)
    step = 60.0
    fixes = []
    t = 0.0
    while t <= model.duration_s + 3600:
        fix = model.fix(t, rng)
        assert fix is not None
        fixes.append((t, fix))
        # 5 sigma of 5 m noise per axis, plus rounding to 1e-6 degrees.
        assert distance_to_route_m(fix.lat, fix.lon, route) < 5 * 5.0 * 1.5 + 0.2
        t += step
    max_speed = 25.0 * 1.1
    for (t0, a), (t1, b) in itertools.pairwise(fixes):
        assert distance_m(a.lat, a.lon, b.lat, b.lon) <= max_speed * (t1 - t0) + 10 * 5.0
    # It got there and stood still.
    end = route.waypoints[-1]
    last = fixes[-1][1]
    assert distance_m(last.lat, last.lon, end.lat, end.lon) < 50
    assert last.speed_mps == 0.0


def test_journey_takes_plausible_time_with_stops() -> None:
    route = BUILTIN_ROUTES["rotterdam-munich"]
    model = shipment(route, stop_probability=1.0)
    driving = route.length_m / 25.0
    dwell = sum(w.stop_s for w in route.waypoints)
    legs = len(route.waypoints) - 1
    assert driving / 1.1 + dwell + legs * 300 <= model.duration_s
    assert model.duration_s <= driving / 0.85 + dwell + legs * 1800 + 1
    stops = [p for p in model.pieces if p.speed_mps == 0.0]
    assert len(stops) >= legs  # one en-route stop per leg, plus dwells at waypoints


def test_lost_fixes_happen_about_as_often_as_configured() -> None:
    model = shipment(BUILTIN_ROUTES["chicago-atlanta"], lost_fix_probability=0.1)
    rng = random.Random(5)
    lost = sum(model.fix(float(t), rng) is None for t in range(5000))
    assert 400 <= lost <= 600  # binomial(5000, 0.1): mean 500, sd 21


def test_cold_chain_holds_setpoint_until_the_reefer_fails() -> None:
    model = shipment(BUILTIN_ROUTES["rotterdam-munich"])
    rng = random.Random(0)
    assert all(4.9 <= model.container_c(t * 600.0, rng) <= 5.1 for t in range(20))
    model.set_fault("reefer_failure", True, 12_000.0)
    assert model.container_c(12_000.0 + 3 * 3600, rng) > 8.0  # out of the 2-8 °C band
    model.set_fault("reefer_failure", False, 12_000.0 + 3 * 3600)
    assert model.container_c(12_000.0 + 10 * 3600, rng) < 5.5  # pulled back down


def test_open_door_warms_faster_than_a_dead_reefer() -> None:
    rng = random.Random(0)
    door, reefer = (
        shipment(BUILTIN_ROUTES["chicago-atlanta"]),
        shipment(BUILTIN_ROUTES["chicago-atlanta"]),
    )
    door.set_fault("door_open", True, 0.0)
    reefer.set_fault("reefer_failure", True, 0.0)
    assert door.container_c(900.0, rng) > reefer.container_c(900.0, rng) + 5


def test_ambient_profile_swings_with_the_day() -> None:
    model = shipment(BUILTIN_ROUTES["chicago-atlanta"], profile="ambient", diurnal_c=8.0)
    rng = random.Random(0)
    day = [model.container_c(h * 3600.0, rng) for h in range(48)]
    assert max(day[24:]) - min(day[24:]) > 8.0
    assert max(day[24:]) < 25.0 + 8.0


def test_route_file_loads_and_resolves_relative_to_the_scenario() -> None:
    route = resolve_route("../routes/shenzhen-hongkong.toml", CONFIG / "scenarios")
    assert route.name == "shenzhen-hongkong"
    assert route.waypoints[1].stop_s == 45 * 60
    assert load_route(CONFIG / "routes" / "shenzhen-hongkong.toml") == route


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('name = "x"\n', "'waypoints' must be a list", id="no-waypoints"),
        pytest.param(
            'name = "x"\n[[waypoints]]\nlat = 1\nlon = 2\n[[waypoints]]\nlat = 95\nlon = 2\n',
            "waypoints[1]: waypoint 'waypoint 1': lat 95.0 is not in -90..90",
            id="lat-range",
        ),
        pytest.param(
            'name = "x"\n[[waypoints]]\nlat = 1\nlon = "2"\n[[waypoints]]\nlat = 5\nlon = 2\n',
            "waypoints[0]: 'lon' must be a number",
            id="lon-type",
        ),
        pytest.param(
            'name = "x"\ncolour = 1\n[[waypoints]]\nlat = 1\nlon = 2\n',
            "unknown key 'colour'",
            id="unknown-key",
        ),
        pytest.param("name = ", "not valid TOML", id="toml"),
    ],
)
def test_bad_route_files_are_named_precisely(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "route.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=r"route file .*route\.toml") as info:
        load_route(path)
    assert message in str(info.value)


def test_unknown_route_name_lists_the_builtin_ones(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="unknown route 'paris-rome': use one of chicago"):
        resolve_route("paris-rome", tmp_path)
