"""The ``[alerts]`` table of gateway.toml: asset kinds, per-asset overrides, regions.

Frozen values parsed from the TOML table; every error names its key (e.g.
``alerts.kinds.shipment.celsius_min``). :mod:`gateway.alerts` checks readings against
them (docs/ALERTS.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError

EARTH_RADIUS_KM = 6371.0088  # the mean Earth radius (IUGG)


# -- configuration values ------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """An allowed area: a latitude/longitude box (not crossing the antimeridian)."""

    name: str
    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def contains(self, lat: float, lon: float) -> bool:
        return self.lat_min <= lat <= self.lat_max and self.lon_min <= lon <= self.lon_max

    def distance_km(self, lat: float, lon: float) -> float:
        """Great-circle distance to the box's nearest point (0 inside), clamping lat and lon."""
        nearest_lat = min(max(lat, self.lat_min), self.lat_max)
        nearest_lon = min(max(lon, self.lon_min), self.lon_max)
        return haversine_km(lat, lon, nearest_lat, nearest_lon)


@dataclass(frozen=True)
class MaxDistance:
    """At most ``km`` kilometres from the point ``lat``, ``lon``."""

    lat: float
    lon: float
    km: float


@dataclass(frozen=True)
class Rule:
    """Thresholds; ``None`` means "not set" (a per-asset override then keeps the kind's)."""

    celsius_min: float | None = None
    celsius_max: float | None = None
    regions: tuple[Region, ...] | None = None
    max_distance: MaxDistance | None = None

    def over(self, base: Rule) -> Rule:
        """This rule's set keys replacing those of ``base``."""
        return Rule(
            celsius_min=base.celsius_min if self.celsius_min is None else self.celsius_min,
            celsius_max=base.celsius_max if self.celsius_max is None else self.celsius_max,
            regions=base.regions if self.regions is None else self.regions,
            max_distance=base.max_distance if self.max_distance is None else self.max_distance,
        )


@dataclass(frozen=True)
class AssetKind:
    """A kind of asset, told by asset-id prefixes, and its thresholds."""

    name: str
    asset_prefixes: tuple[str, ...]
    rule: Rule


@dataclass(frozen=True)
class AssetOverride:
    """Thresholds for one asset id, or for every id starting with a prefix (``"ship-*"``)."""

    pattern: str
    rule: Rule

    @property
    def prefix(self) -> str | None:
        return self.pattern[:-1] if self.pattern.endswith("*") else None


DEFAULT_KINDS: tuple[AssetKind, ...] = (
    AssetKind("shipment", ("reefer-", "ship-"), Rule(celsius_min=2.0, celsius_max=8.0)),
    AssetKind("heat_sink", ("heatsink-", "hs-"), Rule(celsius_max=85.0)),
    AssetKind("die_cast_housing", ("housing-",), Rule(celsius_max=85.0)),
)


@dataclass(frozen=True)
class AlertsSection:
    """``[alerts]`` of gateway.toml (parsed by :meth:`from_toml`)."""

    enabled: bool = True
    topic_prefix: str = "alerts"
    kinds: tuple[AssetKind, ...] = DEFAULT_KINDS
    assets: tuple[AssetOverride, ...] = ()

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], name: str = "alerts") -> AlertsSection:
        """The section from its TOML table; a ConfigError names the key at fault."""
        _known(table, name, ("enabled", "topic_prefix", "kinds", "assets"))
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{name}.enabled: must be true or false")
        prefix = table.get("topic_prefix", "alerts")
        if (
            not isinstance(prefix, str)
            or re.fullmatch(r"[^/+#\x00]+(/[^/+#\x00]+)*", prefix) is None
        ):
            raise ConfigError(
                f"{name}.topic_prefix: must be a topic like 'alerts' or 'site-1/alerts' "
                "(no + or #, no empty level, no leading or trailing /)"
            )
        kinds = DEFAULT_KINDS
        if "kinds" in table:
            kinds = tuple(
                _kind(kind, value, f"{name}.kinds.{kind}")
                for kind, value in _table(table["kinds"], f"{name}.kinds").items()
            )
            owner: dict[str, str] = {}
            for kind in kinds:
                for asset_prefix in kind.asset_prefixes:
                    if asset_prefix in owner:
                        raise ConfigError(
                            f"{name}.kinds.{kind.name}.asset_prefixes: {asset_prefix!r} is "
                            f"already a prefix of kind {owner[asset_prefix]!r}"
                        )
                    owner[asset_prefix] = kind.name
        assets: tuple[AssetOverride, ...] = ()
        if "assets" in table:
            assets = tuple(
                _override(pattern, value, f'{name}.assets."{pattern}"')
                for pattern, value in _table(table["assets"], f"{name}.assets").items()
            )
            for override in assets:
                _check_band(override, kinds, f'{name}.assets."{override.pattern}"')
        return cls(enabled=enabled, topic_prefix=prefix, kinds=kinds, assets=assets)


# -- parsing, every error naming its key --------------------------------------------------


def _table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table")
    return value


def _known(table: Mapping[str, Any], key: str, names: Sequence[str]) -> None:
    for name in table:
        if name not in names:
            raise ConfigError(f"{key}.{name}: unknown key (known: {', '.join(names)})")


def _number(value: object, key: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ConfigError(f"{key}: {value!r} is outside {low:g}..{high:g}")
    return number


_RULE_KEYS = ("celsius_min", "celsius_max", "regions", "max_distance")


def _rule(table: Mapping[str, Any], key: str) -> Rule:
    low = (
        None if "celsius_min" not in table else _number(table["celsius_min"], f"{key}.celsius_min")
    )
    high = (
        None if "celsius_max" not in table else _number(table["celsius_max"], f"{key}.celsius_max")
    )
    if low is not None and high is not None and low >= high:
        raise ConfigError(f"{key}.celsius_max: must exceed celsius_min ({low:g})")
    regions = None
    if "regions" in table:
        listed = table["regions"]
        if not isinstance(listed, list):
            raise ConfigError(f"{key}.regions: must be a list of tables {{name, lat_min, ...}}")
        regions = tuple(_region(r, f"{key}.regions[{i}]") for i, r in enumerate(listed))
    distance = None
    if "max_distance" in table:
        where = f"{key}.max_distance"
        spec = _table(table["max_distance"], where)
        _known(spec, where, ("lat", "lon", "km"))
        for part in ("lat", "lon", "km"):
            if part not in spec:
                raise ConfigError(f"{where}.{part}: is missing (lat, lon and km go together)")
        distance = MaxDistance(
            lat=_number(spec["lat"], f"{where}.lat", -90, 90),
            lon=_number(spec["lon"], f"{where}.lon", -180, 180),
            km=_number(spec["km"], f"{where}.km", 0, 20_100),
        )
        if distance.km <= 0:
            raise ConfigError(f"{where}.km: must be more than 0")
    return Rule(celsius_min=low, celsius_max=high, regions=regions, max_distance=distance)


def _region(value: object, key: str) -> Region:
    spec = _table(value, key)
    names = ("name", "lat_min", "lat_max", "lon_min", "lon_max")
    _known(spec, key, names)
    for part in names:
        if part not in spec:
            raise ConfigError(f"{key}.{part}: is missing")
    if not isinstance(spec["name"], str) or not spec["name"]:
        raise ConfigError(f"{key}.name: must be a non-empty string")
    region = Region(
        name=spec["name"],
        lat_min=_number(spec["lat_min"], f"{key}.lat_min", -90, 90),
        lat_max=_number(spec["lat_max"], f"{key}.lat_max", -90, 90),
        lon_min=_number(spec["lon_min"], f"{key}.lon_min", -180, 180),
        lon_max=_number(spec["lon_max"], f"{key}.lon_max", -180, 180),
    )
    if region.lat_min >= region.lat_max:
        raise ConfigError(f"{key}.lat_max: must exceed lat_min")
    if region.lon_min >= region.lon_max:
        raise ConfigError(
            f"{key}.lon_max: must exceed lon_min (a box across the antimeridian is two regions)"
        )
    return region


def _kind(name: str, value: object, key: str) -> AssetKind:
    spec = _table(value, key)
    _known(spec, key, ("asset_prefixes", *_RULE_KEYS))
    prefixes = spec.get("asset_prefixes")
    if (
        not isinstance(prefixes, list)
        or not prefixes
        or not all(isinstance(p, str) and p for p in prefixes)
    ):
        raise ConfigError(
            f"{key}.asset_prefixes: must be a non-empty list of non-empty strings "
            "(the asset ids of this kind start with one of them)"
        )
    return AssetKind(name, tuple(prefixes), _rule(spec, key))


def _override(pattern: str, value: object, key: str) -> AssetOverride:
    spec = _table(value, key)
    _known(spec, key, _RULE_KEYS)
    if not pattern or pattern == "*" or "*" in pattern[:-1]:
        raise ConfigError(
            f"{key}: must be an asset id, or a prefix followed by one * at the end ('ship-*')"
        )
    return AssetOverride(pattern, _rule(spec, key))


def _check_band(override: AssetOverride, kinds: Sequence[AssetKind], key: str) -> None:
    """Refuse an override whose band, on top of a kind it may apply to, is empty."""
    start = override.pattern if override.prefix is None else override.prefix
    for kind in kinds:
        # The override can meet this kind if one of the two id prefixes extends the other
        # (for an exact id: if the id starts with the kind's prefix).
        if not any(
            start.startswith(p) or (override.prefix is not None and p.startswith(start))
            for p in kind.asset_prefixes
        ):
            continue
        band = override.rule.over(kind.rule)
        low, high = band.celsius_min, band.celsius_max
        if low is not None and high is not None and low >= high:
            raise ConfigError(
                f"{key}: with kind {kind.name!r} the band is empty (celsius_min {low:g}, "
                f"celsius_max {high:g}): set both bounds"
            )


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points in km (a sphere of the mean Earth radius)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlam = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
