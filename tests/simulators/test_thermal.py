"""The first-order thermal model: step response, duty cycle, faults, determinism."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.thermal import COMPONENT_FAULTS, PARTS, ComponentModel, DutyCycle, PartType


def model(part: PartType, *, on_fraction: float = 1.0, period: float = 600.0) -> ComponentModel:
    return ComponentModel(
        part, ambient_c=25.0, duty=DutyCycle(period, on_fraction), noise_c=0.0, phase_s=0.0
    )


@pytest.mark.parametrize("part", PARTS.values(), ids=list(PARTS))
def test_step_response_follows_the_first_order_solution(part: PartType) -> None:
    m = model(part)
    rise = part.power_w * part.r_th
    for t in (0.0, part.tau_s / 4, part.tau_s, 3 * part.tau_s, 10 * part.tau_s):
        expected = 25.0 + rise * (1 - math.exp(-t / part.tau_s))
        assert m.sample(t, random.Random(0)) == pytest.approx(expected, abs=0.006)
    # After one time constant the part has made 63.2 % of its rise (the textbook figure).
    assert (model(part).sample(part.tau_s, random.Random(0)) - 25.0) / rise == pytest.approx(
        0.632, abs=0.001
    )


def test_noise_averages_out_to_the_model() -> None:
    part = PARTS["heat_sink"]
    noisy = ComponentModel(part, ambient_c=25.0, duty=DutyCycle(), noise_c=0.5)
    rng = random.Random(3)
    t_end = 10 * part.tau_s
    samples = [noisy.sample(t_end + i, rng) for i in range(2000)]
    mean = sum(samples) / len(samples)
    assert mean == pytest.approx(part.steady_state_c(25.0, part.power_w), abs=0.05)
    sd = math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples))
    assert sd == pytest.approx(0.5, rel=0.1)


@given(
    times=st.lists(st.floats(min_value=0.0, max_value=5000.0), min_size=1, max_size=30),
    on_fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_result_does_not_depend_on_how_often_it_is_sampled(
    times: list[float], on_fraction: float
) -> None:
    part = PARTS["thermoelectric_module"]
    stepped = model(part, on_fraction=on_fraction, period=100.0)
    for t in sorted(times):
        stepped.advance(t)
    end = max(times)
    once = model(part, on_fraction=on_fraction, period=100.0)
    once.advance(end)
    assert stepped.temperature_c == pytest.approx(once.temperature_c, abs=1e-6)


def test_fast_duty_cycle_settles_at_the_mean_power() -> None:
    part = PARTS["die_cast_housing"]  # tau 900 s, much longer than the 60 s period
    m = model(part, on_fraction=0.25, period=60.0)
    mean_power = 0.25 * part.power_w + 0.75 * part.idle_power_w
    assert m.sample(20 * part.tau_s, random.Random(0)) == pytest.approx(
        part.steady_state_c(25.0, mean_power), abs=0.5
    )


@pytest.mark.parametrize("fault", list(COMPONENT_FAULTS))
@pytest.mark.parametrize("part", PARTS.values(), ids=list(PARTS))
def test_faults_drive_the_part_past_its_rating(part: PartType, fault: str) -> None:
    healthy = model(part)
    assert healthy.sample(10 * part.tau_s, random.Random(0)) < part.rating_c
    failing = model(part)
    failing.set_fault(fault, True, 5 * part.tau_s)
    assert failing.sample(5 * part.tau_s, random.Random(0)) < part.rating_c
    assert failing.sample(15 * part.tau_s, random.Random(0)) > part.rating_c
    failing.set_fault(fault, False, 15 * part.tau_s)  # repaired: it cools back down
    assert failing.sample(30 * part.tau_s, random.Random(0)) < part.rating_c


def test_same_seed_same_readings() -> None:
    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        m = ComponentModel(PARTS["heat_sink"], ambient_c=25.0, duty=DutyCycle(60, 0.5), noise_c=0.2)
        return [m.sample(t * 7.0, rng) for t in range(50)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_duty_cycle_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="on_fraction"):
        DutyCycle(60, 1.5)
    with pytest.raises(ValueError, match="period_s"):
        DutyCycle(0, 0.5)
