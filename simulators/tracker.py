"""Shipment trackers: a position along a route and the container's temperature.

The journey is planned once, up front, from the seeded random source: each leg
between waypoints is driven at the cruise speed times a per-leg factor (0.85 to 1.1),
some legs have a stop on the way (traffic, a driver's rest: 5 to 30 minutes), and
the tracker dwells at waypoints for the route's stop time. The plan is a list of
pieces, each either moving in a straight line at constant speed or standing still,
so the true position at any time is a lookup, and a fix is that position plus
Gaussian GPS noise. Now and then a fix is lost (no reading that time).

The container temperature is first order like the components (:func:`relax`): a
reefer holds its setpoint (cold chain), an unregulated box follows the outside
temperature with a daily swing (ambient). A reefer failure lets it drift to the
outside temperature slowly; an open door does so quickly.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Literal

from simulators.routes import Route, distance_m, offset_m
from simulators.thermal import relax

Profile = Literal["cold_chain", "ambient"]
PROFILES: tuple[Profile, ...] = ("cold_chain", "ambient")
SHIPMENT_FAULTS = ("reefer_failure", "door_open")

REEFER_TAU_S = 1800.0  # a working reefer pulls back to its setpoint
WARMING_TAU_S = 7200.0  # an insulated box with a dead reefer
DOOR_OPEN_TAU_S = 900.0
AMBIENT_TAU_S = 3600.0
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch of the journey: from one point to another between two times."""

    t0: float
    t1: float
    lat0: float
    lon0: float
    lat1: float
    lon1: float

    @property
    def speed_mps(self) -> float:
        duration = self.t1 - self.t0
        if duration <= 0:
            return 0.0
        return distance_m(self.lat0, self.lon0, self.lat1, self.lon1) / duration


@dataclass(frozen=True, slots=True)
class Fix:
    """One tracker fix: what a location reading reports."""

    lat: float
    lon: float
    speed_mps: float
    accuracy_m: float


def plan_journey(
    route: Route, *, speed_mps: float, stop_probability: float, rng: random.Random
) -> list[Piece]:
    """The pieces of one drive along ``route``, seeded by ``rng``."""
    pieces: list[Piece] = []
    t = 0.0

    def move(lat0: float, lon0: float, lat1: float, lon1: float, speed: float) -> None:
        nonlocal t
        duration = distance_m(lat0, lon0, lat1, lon1) / speed
        pieces.append(Piece(t, t + duration, lat0, lon0, lat1, lon1))
        t += duration

    def stand(lat: float, lon: float, duration: float) -> None:
        nonlocal t
        if duration > 0:
            pieces.append(Piece(t, t + duration, lat, lon, lat, lon))
            t += duration

    for a, b in zip(route.waypoints, route.waypoints[1:], strict=False):
        speed = speed_mps * rng.uniform(0.85, 1.1)
        if rng.random() < stop_probability:
            frac = rng.uniform(0.2, 0.8)
            mid_lat, mid_lon = a.lat + frac * (b.lat - a.lat), a.lon + frac * (b.lon - a.lon)
            move(a.lat, a.lon, mid_lat, mid_lon, speed)
            stand(mid_lat, mid_lon, rng.uniform(5, 30) * 60)
            move(mid_lat, mid_lon, b.lat, b.lon, speed)
        else:
            move(a.lat, a.lon, b.lat, b.lon, speed)
        stand(b.lat, b.lon, b.stop_s)
    return pieces


class ShipmentModel:
    """One shipment: where it is and how warm its container is, over model time."""

    def __init__(
        self,
        route: Route,
        *,
        rng: random.Random,
        speed_mps: float,
        stop_probability: float,
        start_s: float,
        gps_noise_m: float,
        lost_fix_probability: float,
        profile: Profile,
        setpoint_c: float,
        ambient_c: float,
        diurnal_c: float,
        noise_c: float,
    ) -> None:
        self.route = route
        self.pieces = plan_journey(
            route, speed_mps=speed_mps, stop_probability=stop_probability, rng=rng
        )
        self._starts = [piece.t0 for piece in self.pieces]
        self.start_s = start_s  # how far into its journey the shipment is at t = 0
        self.gps_noise_m = gps_noise_m
        self.lost_fix_probability = lost_fix_probability
        self.profile = profile
        self.setpoint_c = setpoint_c
        self.ambient_c = ambient_c
        self.diurnal_c = diurnal_c
        self.noise_c = noise_c
        self.temperature_c = setpoint_c if profile == "cold_chain" else self.outside_c(0.0)
        self.t_s = 0.0
        self.faults: set[str] = set()

    @property
    def duration_s(self) -> float:
        return self.pieces[-1].t1

    def position(self, t_s: float) -> tuple[float, float, float]:
        """The true latitude, longitude and speed at model time ``t_s``."""
        journey_t = t_s + self.start_s
        i = max(0, bisect.bisect_right(self._starts, journey_t) - 1)
        piece = self.pieces[i]
        if journey_t >= piece.t1:  # arrived: stand at the destination
            return piece.lat1, piece.lon1, 0.0
        u = (journey_t - piece.t0) / (piece.t1 - piece.t0)
        lat = piece.lat0 + u * (piece.lat1 - piece.lat0)
        lon = piece.lon0 + u * (piece.lon1 - piece.lon0)
        return lat, lon, piece.speed_mps

    def fix(self, t_s: float, rng: random.Random) -> Fix | None:
        """A GPS fix at ``t_s``, or None when the fix is lost."""
        if rng.random() < self.lost_fix_probability:
            return None
        lat, lon, speed = self.position(t_s)
        north, east = rng.gauss(0.0, self.gps_noise_m), rng.gauss(0.0, self.gps_noise_m)
        lat, lon = offset_m(lat, lon, north, east)
        reported_speed = max(0.0, speed + rng.gauss(0.0, 0.3)) if speed > 0 else 0.0
        return Fix(
            round(lat, 6),
            round(lon, 6),
            round(reported_speed, 1),
            round(self.gps_noise_m * rng.uniform(0.8, 1.5), 1),
        )

    def outside_c(self, t_s: float) -> float:
        """Outside air temperature: a daily sine around ``ambient_c``, warmest at 15:00."""
        return self.ambient_c + self.diurnal_c * math.sin(2 * math.pi * (t_s - 9 * 3600) / DAY_S)

    def _target_and_tau(self, t_s: float) -> tuple[float, float]:
        if "door_open" in self.faults:
            return self.outside_c(t_s), DOOR_OPEN_TAU_S
        if self.profile == "ambient":
            return self.outside_c(t_s), AMBIENT_TAU_S
        if "reefer_failure" in self.faults:
            return self.outside_c(t_s), WARMING_TAU_S
        return self.setpoint_c, REEFER_TAU_S

    def advance(self, t_s: float) -> None:
        """Move the container temperature to ``t_s`` in steps of at most 10 minutes."""
        while self.t_s < t_s:
            step_end = min(t_s, self.t_s + 600.0)
            target, tau = self._target_and_tau((self.t_s + step_end) / 2)
            self.temperature_c = relax(self.temperature_c, target, step_end - self.t_s, tau)
            self.t_s = step_end

    def set_fault(self, fault: str, active: bool, t_s: float) -> None:
        """Start or end a reefer failure or an open door at model time ``t_s``."""
        if fault not in SHIPMENT_FAULTS:
            raise ValueError(f"unknown shipment fault {fault!r}")
        self.advance(t_s)
        if active:
            self.faults.add(fault)
        else:
            self.faults.discard(fault)

    def container_c(self, t_s: float, rng: random.Random) -> float:
        """What the container's temperature probe reads at ``t_s``."""
        self.advance(t_s)
        return round(self.temperature_c + rng.gauss(0.0, self.noise_c), 2)
