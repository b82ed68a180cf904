"""Live alerts: the thresholds of ``[alerts]`` in gateway.toml and the checks against them.

An asset's kind (``shipment``, ``heat_sink``, ...) is told by an asset-id prefix rule
in config (``alerts.kinds.<name>.asset_prefixes``), not from the reading: a heat sink
and a reefer both send temperatures, and a tracker's location readings carry the same
asset id as the reefer's thermometer. A per-asset override (``alerts.assets."ID"``,
or ``alerts.assets."PREFIX*"``) replaces the kind's thresholds key by key. Readings
without an ``asset_id``, or whose asset has no kind and no override, raise no alerts.

Checks (one reading can break several; docs/ALERTS.md):

- ``temperature_low`` / ``temperature_high``: ``celsius`` below ``celsius_min`` or
  above ``celsius_max``;
- ``outside_regions``: a location in none of the allowed ``regions`` (lat/lon boxes);
  the value is the great-circle distance in km to the nearest box, threshold 0;
- ``too_far``: a location more than ``max_distance.km`` from its centre point.

Everything here is pure: functions from a reading to its breaches, against the
frozen values of the table (parsed in :mod:`gateway.alerts_config`, where every error
names its key, e.g. ``alerts.kinds.shipment.celsius_min``). The anchorer turns
breaches into :class:`Alert` rows in the batch's transaction; the service publishes
them after the commit.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.alerts_config import (
    AlertsSection,
    AssetKind,
    AssetOverride,
    Rule,
    haversine_km,
)
from gateway.readings import LocationReading, Reading, TemperatureReading

ALERT_FORMAT_VERSION = 1

AlertKind = Literal["temperature_low", "temperature_high", "outside_regions", "too_far"]
ALERT_KINDS: tuple[AlertKind, ...] = (
    "temperature_low",
    "temperature_high",
    "outside_regions",
    "too_far",
)


# -- the checks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The thresholds that apply to one asset, and where they came from."""

    asset_kind: str | None
    rule_name: str  # "kind shipment", "asset reefer-1" or "asset reefer-*"
    rule: Rule


@dataclass(frozen=True, slots=True)
class Breach:
    kind: AlertKind
    value: float
    threshold: float


def resolve(section: AlertsSection, asset_id: str) -> Resolved | None:
    """The asset's kind (longest matching prefix) with the most specific override on top."""
    kind: AssetKind | None = None
    matched = -1
    for candidate in section.kinds:
        for prefix in candidate.asset_prefixes:
            if asset_id.startswith(prefix) and len(prefix) > matched:
                kind, matched = candidate, len(prefix)
    override: AssetOverride | None = None
    best = -1.0
    for entry in section.assets:
        start = entry.prefix
        if start is None:
            if entry.pattern == asset_id:
                override, best = entry, math.inf  # an exact id beats any prefix
        elif asset_id.startswith(start) and len(start) > best:
            override, best = entry, len(start)
    base = Rule() if kind is None else kind.rule
    if override is not None:
        return Resolved(
            None if kind is None else kind.name,
            f"asset {override.pattern}",
            override.rule.over(base),
        )
    if kind is not None:
        return Resolved(kind.name, f"kind {kind.name}", base)
    return None


def check(rule: Rule, reading: Reading) -> list[Breach]:
    """The thresholds of ``rule`` that ``reading`` breaks (none: an empty list)."""
    breaches: list[Breach] = []
    if isinstance(reading, TemperatureReading):
        celsius = reading.celsius
        if rule.celsius_min is not None and celsius < rule.celsius_min:
            breaches.append(Breach("temperature_low", celsius, rule.celsius_min))
        if rule.celsius_max is not None and celsius > rule.celsius_max:
            breaches.append(Breach("temperature_high", celsius, rule.celsius_max))
        return breaches
    lat, lon = reading.lat, reading.lon
    if rule.regions and not any(region.contains(lat, lon) for region in rule.regions):
        nearest = min(region.distance_km(lat, lon) for region in rule.regions)
        breaches.append(Breach("outside_regions", round(nearest, 3), 0.0))
    limit = rule.max_distance
    if limit is not None:
        distance = haversine_km(limit.lat, limit.lon, lat, lon)
        if distance > limit.km:
            breaches.append(Breach("too_far", round(distance, 3), limit.km))
    return breaches


# -- alerts: rows of the alerts table and MQTT messages ----------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    """One broken threshold of one anchored reading (a row of the ``alerts`` table)."""

    alert_id: str
    asset_id: str
    asset_kind: str | None
    rule: str
    device_id: str
    block_height: int
    leaf_index: int
    kind: AlertKind
    value: float
    threshold: float
    received_ns: int
    created_ns: int
    reading_kind: str
    ts_ms: int
    lat: float | None = None
    lon: float | None = None

    def topic(self, prefix: str) -> str:
        return f"{prefix}/{self.asset_id}"

    def to_json(self, gateway_id: str) -> bytes:
        """The MQTT payload (docs/ALERTS.md)."""
        document = {
            "version": ALERT_FORMAT_VERSION,
            "alert_id": self.alert_id,
            "gateway_id": gateway_id,
            "asset_id": self.asset_id,
            "asset_kind": self.asset_kind,
            "rule": self.rule,
            "kind": self.kind,
            "value": self.value,
            "threshold": self.threshold,
            "unit": "celsius" if self.kind.startswith("temperature") else "km",
            "device_id": self.device_id,
            "reading_kind": self.reading_kind,
            "block_height": self.block_height,
            "leaf_index": self.leaf_index,
            "ts_ms": self.ts_ms,
            "received_ns": self.received_ns,
            "created_ns": self.created_ns,
            "lat": self.lat,
            "lon": self.lon,
        }
        return json.dumps(document, separators=(",", ":")).encode()


def alert_id(gateway_id: str, block_height: int, leaf_index: int, kind: AlertKind) -> str:
    """``gateway:height:leaf:kind``: unique, and the same if the alert is ever sent again."""
    return f"{gateway_id}:{block_height}:{leaf_index}:{kind}"


class Thresholds:
    """The configured thresholds, with a bounded cache of resolved assets (writer thread)."""

    def __init__(self, section: AlertsSection, cache_size: int = 4096) -> None:
        self.section = section
        self._resolve: Callable[[str], Resolved | None] = functools.lru_cache(cache_size)(
            functools.partial(resolve, section)
        )

    def alerts(
        self,
        gateway_id: str,
        reading: Reading,
        block_height: int,
        leaf_index: int,
        received_ns: int,
        created_ns: int,
    ) -> list[Alert]:
        """The alerts one anchored reading raises (most readings: none)."""
        asset_id = reading.asset_id
        if asset_id is None:
            return []
        resolved = self._resolve(asset_id)
        if resolved is None:
            return []
        breaches = check(resolved.rule, reading)
        if not breaches:
            return []
        lat = reading.lat if isinstance(reading, LocationReading) else None
        lon = reading.lon if isinstance(reading, LocationReading) else None
        return [
            Alert(
                alert_id=alert_id(gateway_id, block_height, leaf_index, breach.kind),
                asset_id=asset_id,
                asset_kind=resolved.asset_kind,
                rule=resolved.rule_name,
                device_id=reading.device_id,
                block_height=block_height,
                leaf_index=leaf_index,
                kind=breach.kind,
                value=breach.value,
                threshold=breach.threshold,
                received_ns=received_ns,
                created_ns=created_ns,
                reading_kind=reading.kind,
                ts_ms=reading.ts,
                lat=lat,
                lon=lon,
            )
            for breach in breaches
        ]
