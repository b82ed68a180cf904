"""The report's pure figures on small series with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.excursions import Band, Sample, find_excursions, union_ms, worst_excursion
from gateway.mkt import mean_kinetic_temperature
from gateway.route import EARTH_RADIUS_M, Fix, distance_m, find_stops, haversine_m


def mkt_reference(celsius: list[float], delta_h_over_r: float = 10_000.0) -> float:
    """Haynes' formula written out with numpy (USP <1160>: ΔH/R = 83.144 / 0.0083144)."""
    kelvin = np.asarray(celsius) + 273.15
    return float(delta_h_over_r / -np.log(np.mean(np.exp(-delta_h_over_r / kelvin))) - 273.15)


@pytest.mark.parametrize(
    "celsius",
    [
        pytest.param([5.0] * 10, id="constant"),
        pytest.param([0.0, 20.0], id="two"),
        pytest.param([2.0, 4.0, 6.0, 8.0, 25.0, 5.0], id="one-warm-reading"),
        pytest.param([-20.0, -18.5, -19.0], id="frozen"),
    ],
)
def test_mkt_matches_the_formula(celsius: list[float]) -> None:
    assert mean_kinetic_temperature(celsius) == pytest.approx(mkt_reference(celsius), abs=1e-9)


def test_mkt_of_a_constant_is_that_temperature_and_weights_count() -> None:
    assert mean_kinetic_temperature([7.25] * 5) == pytest.approx(7.25, abs=1e-9)
    # A reading standing for three times as long counts as three equal readings.
    weighted = mean_kinetic_temperature([4.0, 12.0], weights=[3.0, 1.0])
    assert weighted == pytest.approx(mean_kinetic_temperature([4.0, 4.0, 4.0, 12.0]), abs=1e-9)
    # Other activation energies change ΔH/R: 60 kJ/mol is 60000 / 8.3144 K.
    assert mean_kinetic_temperature([0.0, 30.0], 60_000.0) == pytest.approx(
        mkt_reference([0.0, 30.0], 60_000.0 / 8.3144), abs=1e-9
    )


@given(st.lists(st.floats(-50, 150), min_size=1, max_size=50))
def test_mkt_lies_between_the_mean_and_the_maximum(celsius: list[float]) -> None:
    mkt = mean_kinetic_temperature(celsius)
    assert math.fsum(celsius) / len(celsius) - 1e-6 <= mkt <= max(celsius) + 1e-6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(([],), "at least one", id="empty"),
        pytest.param(([5.0], 0.0), "positive", id="zero-energy"),
        pytest.param(([-300.0],), "absolute zero", id="below-zero-kelvin"),
        pytest.param(([5.0], 83_144.0, [1.0, 2.0]), "2 weights for 1", id="weights"),
    ],
)
def test_mkt_refuses_bad_input(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mean_kinetic_temperature(*args)  # type: ignore[arg-type]


def series(values: list[float], step_ms: int = 60_000) -> list[Sample]:
    return [Sample(i * step_ms, v) for i, v in enumerate(values)]


def test_excursions_hold_each_reading_until_the_next() -> None:
    band = Band(2.0, 8.0)
    found = find_excursions(series([5, 9, 10, 5, 5, 1, 1.5, 1.9, 5, 9]), band, "d")
    assert [(e.start_ms, e.end_ms, e.readings, e.side, e.ongoing) for e in found] == [
        (60_000, 180_000, 2, "above", False),
        (300_000, 480_000, 3, "below", False),
        (540_000, 540_000, 1, "above", True),
    ]
    assert [e.peak_c for e in found] == [10, 1, 9]
    worst = worst_excursion(found)
    assert worst is not None
    assert (worst.peak_c, worst.peak_deviation_c, worst.duration_ms) == (10, 2, 120_000)
    assert union_ms((e.start_ms, e.end_ms) for e in found) == 300_000


def test_excursions_on_the_limit_are_inside_and_one_sided_bands() -> None:
    assert find_excursions(series([2.0, 8.0, 2.0]), Band(2.0, 8.0)) == []
    found = find_excursions(series([80, 86, 84, -40]), Band(None, 85.0))
    assert [(e.start_ms, e.end_ms, e.peak_c) for e in found] == [(60_000, 120_000, 86)]
    assert worst_excursion([]) is None


def test_equal_peaks_the_longer_excursion_is_worst() -> None:
    found = find_excursions(series([9, 5, 9, 9, 5]), Band(2.0, 8.0))
    worst = worst_excursion(found)
    assert worst is not None
    assert worst.start_ms == 120_000


def test_union_of_overlapping_excursions() -> None:
    assert union_ms([(0, 10), (5, 20), (30, 40), (40, 41)]) == 31
    assert union_ms([]) == 0


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        pytest.param(None, None, "minimum, a maximum or both", id="open"),
        pytest.param(8.0, 2.0, "not below", id="reversed"),
        pytest.param(math.nan, 2.0, "finite", id="nan"),
    ],
)
def test_band_refuses_bad_limits(low: float | None, high: float | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Band(low, high)


def test_haversine_known_distances() -> None:
    # Along a meridian the great circle is the meridian: R times the latitude change.
    assert haversine_m(52.0, 13.0, 53.0, 13.0) == pytest.approx(EARTH_RADIUS_M * math.pi / 180)
    # A quarter of the equator.
    assert haversine_m(0.0, 0.0, 0.0, 90.0) == pytest.approx(EARTH_RADIUS_M * math.pi / 2)
    # Antipodes: half the circumference, no domain error from rounding.
    assert haversine_m(10.0, 20.0, -10.0, -160.0) == pytest.approx(EARTH_RADIUS_M * math.pi)


def test_stops_and_distance_without_noise_while_standing() -> None:
    minute = 60_000
    lats = [50.0, 50.01, 50.02, 50.02, 50.02, 50.02, 50.02, 50.02, 50.03]
    lons = [8.0, 8.0, 8.0, 8.0003, 7.9997, 8.0003, 7.9997, 8.0, 8.0]
    fixes = [Fix(i * minute, la, lo) for i, (la, lo) in enumerate(zip(lats, lons, strict=True))]
    stops = find_stops(fixes, radius_m=100, min_duration_s=300)
    assert [(s.first, s.last, s.duration_ms) for s in stops] == [(2, 7, 5 * minute)]
    assert stops[0].lat == pytest.approx(50.02)
    assert distance_m(fixes, stops) == pytest.approx(EARTH_RADIUS_M * math.radians(0.03))
    # Counting the jitter too adds its zigzag (about 21 m per leg at 50° N).
    assert distance_m(fixes) > distance_m(fixes, stops) + 80
    # Too short to be a stop.
    assert find_stops(fixes, radius_m=100, min_duration_s=301) == []
