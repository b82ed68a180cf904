"""First-order thermal models of components under a duty cycle.

A component is one lumped thermal mass: heat input ``P`` flows to the ambient through
a thermal resistance ``R`` (K/W), with time constant ``tau``. Its temperature obeys
``dT/dt = (T_amb + P * R - T) / tau``, whose exact solution over a step ``dt`` with
constant input is ``T_ss + (T - T_ss) * exp(-dt / tau)``; :func:`relax` is that
solution, and :class:`ComponentModel` walks it piece by piece across the duty
cycle's on/off switches, so the result does not depend on how often it is sampled.

Faults change ``R``: a fan failure multiplies it (forced convection lost), a
degraded thermal interface multiplies it by less. The factors per part type are
chosen so that either fault at full power drives the part past its rating.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PartType:
    """Thermal constants of one kind of component."""

    name: str
    r_th: float  # K/W, part to ambient
    tau_s: float  # thermal time constant
    power_w: float  # heat input while the duty cycle is on
    idle_power_w: float  # heat input while it is off
    rating_c: float  # maximum rated temperature
    fan_failure_factor: float  # R multiplier when the fan stops
    degraded_tim_factor: float  # R multiplier when the thermal interface degrades

    def steady_state_c(self, ambient_c: float, power_w: float, r_factor: float = 1.0) -> float:
        """The temperature the part settles at with constant input."""
        return ambient_c + power_w * self.r_th * r_factor


PARTS: dict[str, PartType] = {
    part.name: part
    for part in (
        PartType("heat_sink", 0.45, 240.0, 90.0, 10.0, 95.0, 3.5, 1.9),
        PartType("die_cast_housing", 1.1, 900.0, 35.0, 5.0, 85.0, 2.2, 1.8),
        PartType("thermoelectric_module", 0.9, 60.0, 45.0, 3.0, 80.0, 2.8, 1.9),
    )
}

# Physical faults a component model knows, with the part attribute holding the factor.
COMPONENT_FAULTS = {"fan_failure": "fan_failure_factor", "degraded_tim": "degraded_tim_factor"}


def relax(temp_c: float, target_c: float, dt_s: float, tau_s: float) -> float:
    """Exact first-order response: where ``temp_c`` is after ``dt_s`` heading to target."""
    return target_c + (temp_c - target_c) * math.exp(-dt_s / tau_s)


@dataclass(frozen=True, slots=True)
class DutyCycle:
    """Full power for ``on_fraction`` of every ``period_s``, idle power for the rest."""

    period_s: float = 600.0
    on_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ValueError("duty cycle period_s must be > 0")
        if not 0.0 <= self.on_fraction <= 1.0:
            raise ValueError("duty cycle on_fraction must be between 0 and 1")

    def is_on(self, t_s: float) -> bool:
        return (t_s % self.period_s) < self.on_fraction * self.period_s

    def next_switch(self, t_s: float) -> float:
        """The first time after ``t_s`` at which the input may change."""
        period, on_len = self.period_s, self.on_fraction * self.period_s
        k = math.floor(t_s / period)
        for boundary in (k * period + on_len, (k + 1) * period, (k + 1) * period + on_len):
            # A boundary computed a rounding error before t_s is not "after" it.
            if boundary > t_s + 1e-9 + 1e-12 * abs(t_s):
                return boundary
        return (k + 2) * period  # pragma: no cover - unreachable for on_len <= period


class ComponentModel:
    """One component's temperature over model time, starting at ambient at t = 0."""

    def __init__(
        self,
        part: PartType,
        *,
        ambient_c: float,
        duty: DutyCycle,
        noise_c: float,
        phase_s: float = 0.0,
        start_c: float | None = None,
    ) -> None:
        self.part = part
        self.ambient_c = ambient_c
        self.duty = duty
        self.noise_c = noise_c
        self.phase_s = phase_s  # where in its duty cycle this unit is at t = 0
        self.temperature_c = ambient_c if start_c is None else start_c
        self.t_s = 0.0
        self.faults: set[str] = set()

    @property
    def r_factor(self) -> float:
        factor = 1.0
        for fault in self.faults:
            factor *= getattr(self.part, COMPONENT_FAULTS[fault])
        return factor

    def power_at(self, t_s: float) -> float:
        on = self.duty.is_on(t_s + self.phase_s)
        return self.part.power_w if on else self.part.idle_power_w

    def advance(self, t_s: float) -> None:
        """Move the model to time ``t_s``, exactly, across duty-cycle switches."""
        r_factor = self.r_factor
        while self.t_s < t_s:
            piece_end = min(t_s, self.duty.next_switch(self.t_s + self.phase_s) - self.phase_s)
            # The input is constant over the piece; read it at the middle, away from the
            # switches, where rounding cannot put it on the wrong side.
            power = self.power_at((self.t_s + piece_end) / 2)
            target = self.part.steady_state_c(self.ambient_c, power, r_factor)
            self.temperature_c = relax(
                self.temperature_c, target, piece_end - self.t_s, self.part.tau_s
            )
            self.t_s = piece_end

    def set_fault(self, fault: str, active: bool, t_s: float) -> None:
        """Start or end a physical fault at model time ``t_s``."""
        if fault not in COMPONENT_FAULTS:
            raise ValueError(f"unknown component fault {fault!r}")
        self.advance(t_s)
        if active:
            self.faults.add(fault)
        else:
            self.faults.discard(fault)

    def sample(self, t_s: float, rng: random.Random) -> float:
        """What the sensor reads at ``t_s``: the model temperature plus noise, 0.01 °C."""
        self.advance(t_s)
        return round(self.temperature_c + rng.gauss(0.0, self.noise_c), 2)
