"""Routes of waypoints between real places, built in or read from TOML files.

A route is a polyline of waypoints (latitude, longitude in degrees) with an optional
dwell time at each. Between waypoints a tracker moves along the straight line in
latitude and longitude; over legs of a few hundred kilometres that line is within a
fraction of a percent of the great circle, and it is the same line that
:func:`distance_to_route_m` measures against, so "on route" is exact by construction.

A route file (see config/routes/) is::

    name = "antwerp-lyon"
    [[waypoints]]
    name = "Antwerp"
    lat = 51.2194
    lon = 4.4025
    stop_minutes = 45     # optional dwell here, default 0
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.errors import ScenarioError

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True, slots=True)
class Waypoint:
    name: str
    lat: float
    lon: float
    stop_s: float = 0.0

    def __post_init__(self) -> None:
        if not -90.0 <= self.lat <= 90.0:
            raise ValueError(f"waypoint {self.name!r}: lat {self.lat} is not in -90..90")
        if not -180.0 <= self.lon <= 180.0:
            raise ValueError(f"waypoint {self.name!r}: lon {self.lon} is not in -180..180")
        if self.stop_s < 0:
            raise ValueError(f"waypoint {self.name!r}: stop must be >= 0")


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    waypoints: tuple[Waypoint, ...]

    def __post_init__(self) -> None:
        if len(self.waypoints) < 2:
            raise ValueError(f"route {self.name!r} needs at least 2 waypoints")

    @property
    def length_m(self) -> float:
        return sum(
            distance_m(a.lat, a.lon, b.lat, b.lon)
            for a, b in zip(self.waypoints, self.waypoints[1:], strict=False)
        )


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def offset_m(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m`` and ``east_m`` metres away (small offsets, e.g. GPS noise)."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * max(1e-9, math.cos(math.radians(lat)))))
    return lat + dlat, lon + dlon


def distance_to_route_m(lat: float, lon: float, route: Route) -> float:
    """How far a point is from the route's polyline, in metres."""
    best = math.inf
    for a, b in zip(route.waypoints, route.waypoints[1:], strict=False):
        # Project into a local plane (equirectangular at the leg's mean latitude): a
        # straight line in lat/lon is a straight line there too.
        scale = math.cos(math.radians((a.lat + b.lat) / 2))
        bx, by = (b.lon - a.lon) * scale, b.lat - a.lat
        px, py = (lon - a.lon) * scale, lat - a.lat
        length2 = bx * bx + by * by
        u = 0.0 if length2 == 0 else max(0.0, min(1.0, (px * bx + py * by) / length2))
        best = min(best, math.radians(math.hypot(px - u * bx, py - u * by)) * EARTH_RADIUS_M)
    return best


def _route(name: str, *points: tuple[str, float, float, float]) -> Route:
    return Route(
        name, tuple(Waypoint(n, lat, lon, stop_min * 60) for n, lat, lon, stop_min in points)
    )


BUILTIN_ROUTES: dict[str, Route] = {
    route.name: route
    for route in (
        _route(
            "rotterdam-munich",
            ("Rotterdam", 51.9244, 4.4777, 0),
            ("Eindhoven", 51.4416, 5.4697, 20),
            ("Cologne", 50.9375, 6.9603, 30),
            ("Frankfurt", 50.1109, 8.6821, 45),
            ("Nuremberg", 49.4521, 11.0767, 20),
            ("Munich", 48.1351, 11.5820, 0),
        ),
        _route(
            "chicago-atlanta",
            ("Chicago", 41.8781, -87.6298, 0),
            ("Indianapolis", 39.7684, -86.1581, 30),
            ("Louisville", 38.2527, -85.7585, 15),
            ("Nashville", 36.1627, -86.7816, 45),
            ("Chattanooga", 35.0456, -85.3097, 15),
            ("Atlanta", 33.7490, -84.3880, 0),
        ),
        _route(
            "shenzhen-shanghai",
            ("Shenzhen", 22.5431, 114.0579, 0),
            ("Guangzhou", 23.1291, 113.2644, 30),
            ("Shaoguan", 24.8104, 113.5972, 15),
            ("Ganzhou", 25.8311, 114.9336, 30),
            ("Nanchang", 28.6820, 115.8579, 45),
            ("Hangzhou", 30.2741, 120.1551, 30),
            ("Shanghai", 31.2304, 121.4737, 0),
        ),
    )
}


def _number(data: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if value is None:
        raise ScenarioError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: {key!r} must be a number, not {value!r}")
    return float(value)


def route_from_mapping(data: dict[str, Any], where: str) -> Route:
    """A route from parsed TOML; errors name ``where`` and the field."""
    unknown = set(data) - {"name", "waypoints"}
    if unknown:
        raise ScenarioError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: 'name' must be a non-empty string")
    raw_points = data.get("waypoints")
    if not isinstance(raw_points, list) or len(raw_points) < 2:
        raise ScenarioError(f"{where}: 'waypoints' must be a list of at least 2 [[waypoints]]")
    points = []
    for i, raw in enumerate(raw_points):
        at = f"{where}: waypoints[{i}]"
        if not isinstance(raw, dict):
            raise ScenarioError(f"{at} must be a table")
        unknown = set(raw) - {"name", "lat", "lon", "stop_minutes"}
        if unknown:
            raise ScenarioError(f"{at}: unknown key {sorted(unknown)[0]!r}")
        point_name = raw.get("name", f"waypoint {i}")
        if not isinstance(point_name, str):
            raise ScenarioError(f"{at}: 'name' must be a string")
        try:
            points.append(
                Waypoint(
                    point_name,
                    _number(raw, "lat", at),
                    _number(raw, "lon", at),
                    _number(raw, "stop_minutes", at, 0.0) * 60,
                )
            )
        except ValueError as exc:
            raise ScenarioError(f"{at}: {exc}") from None
    return Route(name, tuple(points))


def load_route(path: Path) -> Route:
    """Read a route file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"route file {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"route file {path}: not valid TOML: {exc}") from None
    return route_from_mapping(data, f"route file {path}")


def resolve_route(spec: str, base_dir: Path) -> Route:
    """A built-in route by name, or a route file relative to ``base_dir``."""
    if spec in BUILTIN_ROUTES:
        return BUILTIN_ROUTES[spec]
    path = Path(spec) if Path(spec).is_absolute() else base_dir / spec
    if path.suffix != ".toml":
        known = ", ".join(sorted(BUILTIN_ROUTES))
        raise ScenarioError(f"unknown route {spec!r}: use one of {known} or a .toml route file")
    return load_route(path)
