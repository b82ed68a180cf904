"""The reading schema: what a sensor publishes, shared by the gateway and the simulators.

A sensor publishes one reading per MQTT message on a topic made from the gateway's
topic template (default ``sensors/{device_id}/{kind}``). The payload is a JSON object
or a msgpack map with the fields below; docs/READINGS.md is the prose version of this
module. Validation against configured limits lives in ``gateway.decode``; this module
only names the fields and builds payloads, so that the simulators can depend on it
without importing the rest of the gateway.

Temperature (kind ``temperature``):
    ``celsius`` (number), ``seq`` (int >= 0), ``ts`` (int, sensor clock, ms since the
    Unix epoch), optional ``asset_id`` (str) and ``device_id`` (str, must equal the
    topic's).
Location (kind ``location``):
    ``lat`` (-90..90), ``lon`` (-180..180), ``seq``, ``ts``, optional ``alt_m``,
    ``speed_mps``, ``accuracy_m``, ``asset_id``, ``device_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

Kind = Literal["temperature", "location"]
KINDS: tuple[Kind, ...] = ("temperature", "location")
PayloadFormat = Literal["json", "msgpack"]

DEFAULT_TOPIC_TEMPLATE = "sensors/{device_id}/{kind}"
# The order in which ``to_payload`` writes each kind's fields, absent ones left out. With
# ``encode_payload``'s compact JSON this is the reference layout, which the audit
# checks by comparing bytes instead of parsing (gateway.audit_sql).
PAYLOAD_FIELDS: dict[Kind, tuple[str, ...]] = {
    "temperature": ("device_id", "seq", "ts", "celsius", "asset_id"),
    "location": (
        "device_id",
        "seq",
        "ts",
        "lat",
        "lon",
        "alt_m",
        "speed_mps",
        "accuracy_m",
        "asset_id",
    ),
}
# The fields a reading always has (never None), so that ``to_payload`` always writes them.
ALWAYS_WRITTEN: dict[Kind, frozenset[str]] = {
    "temperature": frozenset({"device_id", "ts", "celsius"}),
    "location": frozenset({"device_id", "ts", "lat", "lon"}),
}


@dataclass(frozen=True, slots=True)
class TemperatureReading:
    """A temperature reading as a sensor reports it."""

    device_id: str
    seq: int | None
    ts: int
    celsius: float
    asset_id: str | None = None

    kind: Kind = "temperature"

    def to_payload(self) -> dict[str, Any]:
        return _payload(self, PAYLOAD_FIELDS["temperature"])


@dataclass(frozen=True, slots=True)
class LocationReading:
    """A position fix as a tracker reports it."""

    device_id: str
    seq: int | None
    ts: int
    lat: float
    lon: float
    alt_m: float | None = None
    speed_mps: float | None = None
    accuracy_m: float | None = None
    asset_id: str | None = None

    kind: Kind = "location"

    def to_payload(self) -> dict[str, Any]:
        return _payload(self, PAYLOAD_FIELDS["location"])


Reading = TemperatureReading | LocationReading


def _payload(reading: Reading, fields: tuple[str, ...]) -> dict[str, Any]:
    """The reading's fields in ``fields`` order, those that are None left out."""
    values = ((name, getattr(reading, name)) for name in fields)
    return {name: value for name, value in values if value is not None}


def encode_payload(payload: dict[str, Any], fmt: PayloadFormat = "json") -> bytes:
    """Serialise a payload mapping as a sensor would put it on the wire."""
    if fmt == "json":
        return json.dumps(payload, separators=(",", ":"), allow_nan=True).encode()
    packed: bytes = msgpack.packb(payload, use_bin_type=True)
    return packed


def encode_reading(reading: Reading, fmt: PayloadFormat = "json") -> bytes:
    """The wire bytes of one reading."""
    return encode_payload(reading.to_payload(), fmt)


def topic_for(device_id: str, kind: Kind, template: str = DEFAULT_TOPIC_TEMPLATE) -> str:
    """The topic a device publishes a reading of ``kind`` on."""
    return template.format(device_id=device_id, kind=kind)
