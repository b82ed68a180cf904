"""A tracker's route: great-circle distance travelled and the stops on the way.

Distance between two fixes is the haversine great-circle distance on a sphere of the
IUGG mean Earth radius (6 371 008.8 m; H. Moritz, "Geodetic Reference System 1980",
Journal of Geodesy 74 (2000) 128-133). On the WGS 84 ellipsoid the true distance
differs by up to about 0.5 %, well below what GPS noise and sampling leave uncertain.

A stop is a stretch of at least ``min_duration_s`` during which every fix stays within
``radius_m`` of the stretch's first fix. Legs between two fixes of the same stop are
not counted as distance travelled, so GPS noise while standing adds nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8
DEFAULT_STOP_RADIUS_M = 100.0
DEFAULT_STOP_MIN_S = 300.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Fix:
    """One position: sensor time (ms since the epoch), latitude and longitude."""

    t_ms: int
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Stop:
    """Fixes ``first``..``last`` (indexes into the route) within the stop radius."""

    first: int
    last: int
    start_ms: int
    end_ms: int
    lat: float  # the mean position of the stop's fixes
    lon: float

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


def find_stops(
    fixes: Sequence[Fix],
    radius_m: float = DEFAULT_STOP_RADIUS_M,
    min_duration_s: float = DEFAULT_STOP_MIN_S,
) -> list[Stop]:
    """The stops along ``fixes`` (sorted by time), in time order."""
    stops: list[Stop] = []
    i = 0
    while i < len(fixes):
        anchor = fixes[i]
        j = i
        while (
            j + 1 < len(fixes)
            and haversine_m(anchor.lat, anchor.lon, fixes[j + 1].lat, fixes[j + 1].lon) <= radius_m
        ):
            j += 1
        if j > i and fixes[j].t_ms - anchor.t_ms >= min_duration_s * 1000:
            members = fixes[i : j + 1]
            stops.append(
                Stop(
                    first=i,
                    last=j,
                    start_ms=anchor.t_ms,
                    end_ms=fixes[j].t_ms,
                    lat=math.fsum(f.lat for f in members) / len(members),
                    lon=math.fsum(f.lon for f in members) / len(members),
                )
            )
            i = j + 1
        else:
            i += 1
    return stops


def distance_m(fixes: Sequence[Fix], stops: Sequence[Stop] = ()) -> float:
    """Metres travelled along ``fixes``, leaving out the legs inside each stop."""
    standing = {k for stop in stops for k in range(stop.first, stop.last)}
    return math.fsum(
        haversine_m(a.lat, a.lon, b.lat, b.lon)
        for k, (a, b) in enumerate(itertools.pairwise(fixes))
        if k not in standing
    )
