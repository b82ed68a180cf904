"""Bad input on demand: each fault kind makes exactly one named kind of bad message.

Every fault message is sent *in addition to* the device's genuine reading, right
after it, so the genuine readings of a device always carry seqs 0, 1, 2, ... with
no gap, and a test can expect exactly those to be stored. Payload faults start from
the genuine reading just sent (same seq) and break it in one way:

=================  =====================================================================
kind               what goes on the wire
=================  =====================================================================
malformed_json     a prefix of the reading's JSON text (always unbalanced, never parses)
truncated_msgpack  a prefix of the reading's msgpack bytes (always incomplete)
wrong_types        one numeric field (seq, ts, celsius, lat, lon) sent as a string
missing_fields     one required field (seq, ts, celsius, or lat / lon) left out
nan_inf            the value (celsius, or lat / lon) is NaN, +Infinity or -Infinity
out_of_range       celsius below absolute zero or absurdly hot; lat beyond ±90; lon beyond ±180
device_mismatch    the payload's device_id names another device than the topic
oversized          a ``padding`` field that makes the payload at least ``bytes`` long
future_clock       ts pushed ``skew_s`` seconds into the future
duplicate          the exact bytes of the device's last genuine message, again
replay             the exact bytes of the device's genuine message ``age`` readings back
burst              ``size`` extra genuine readings at once (new seqs: they are valid)
disconnect         the device's MQTT connection dropped without DISCONNECT, then redialled
=================  =====================================================================

The payload faults are pure functions of a payload mapping and a seeded random
source; duplicates, replays, bursts and disconnects need the fleet and the
connection, so :mod:`simulators.fleet` and :mod:`simulators.publisher` do those.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any, Literal, get_args

import msgpack

from gateway.readings import PayloadFormat, encode_payload

FaultKind = Literal[
    "malformed_json",
    "truncated_msgpack",
    "wrong_types",
    "missing_fields",
    "nan_inf",
    "out_of_range",
    "device_mismatch",
    "oversized",
    "future_clock",
    "duplicate",
    "replay",
    "burst",
    "disconnect",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)  # in the order above

# Per-fault settings with their defaults (the scenario file may set them).
FAULT_PARAMS: dict[str, dict[str, float]] = {
    "oversized": {"bytes": 262_144},
    "future_clock": {"skew_s": 3600},
    "replay": {"age": 10},
    "burst": {"size": 20},
}

_VALUE_FIELDS = ("celsius", "lat", "lon")


def _value_fields(payload: dict[str, Any]) -> list[str]:
    return [name for name in _VALUE_FIELDS if name in payload]


def malformed_json(payload: dict[str, Any], rng: random.Random) -> bytes:
    text = json.dumps(payload, separators=(",", ":")).encode()
    # Any proper prefix of a JSON object leaves its brace open: it cannot parse.
    return text[: rng.randint(1, len(text) - 1)]


def truncated_msgpack(payload: dict[str, Any], rng: random.Random) -> bytes:
    packed: bytes = msgpack.packb(payload, use_bin_type=True)
    # A map header promises its entries: any proper prefix ends before they are all in.
    return packed[: rng.randint(1, len(packed) - 1)]


def wrong_types(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    field = rng.choice(["seq", "ts", *_value_fields(payload)])
    return {**payload, field: str(payload[field])}


def missing_fields(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    field = rng.choice(["seq", "ts", *_value_fields(payload)])
    return {key: value for key, value in payload.items() if key != field}


def nan_inf(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    field = rng.choice(_value_fields(payload))
    return {**payload, field: rng.choice([math.nan, math.inf, -math.inf])}


def out_of_range(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    field = rng.choice(_value_fields(payload))
    choices = {
        "celsius": [-300.0, 5000.0],  # below absolute zero; hotter than any part survives
        "lat": [91.5, -95.0],
        "lon": [180.5, -200.0],
    }[field]
    return {**payload, field: rng.choice(choices)}


def device_mismatch(payload: dict[str, Any], other_device_id: str) -> dict[str, Any]:
    return {**payload, "device_id": other_device_id}


def oversized(payload: dict[str, Any], fmt: PayloadFormat, size: int) -> bytes:
    base = len(encode_payload(payload, fmt))
    return encode_payload({**payload, "padding": "x" * max(0, size - base)}, fmt)


def future_clock(payload: dict[str, Any], skew_s: float) -> dict[str, Any]:
    return {**payload, "ts": payload["ts"] + round(skew_s * 1000)}


def corrupt(
    kind: FaultKind,
    payload: dict[str, Any],
    fmt: PayloadFormat,
    rng: random.Random,
    *,
    other_device_id: str,
    params: dict[str, float],
) -> bytes:
    """The bad wire bytes for a payload fault ``kind`` made from a genuine ``payload``."""
    if kind == "malformed_json":
        return malformed_json(payload, rng)
    if kind == "truncated_msgpack":
        return truncated_msgpack(payload, rng)
    if kind == "oversized":
        return oversized(payload, fmt, int(params["bytes"]))
    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "wrong_types": lambda: wrong_types(payload, rng),
        "missing_fields": lambda: missing_fields(payload, rng),
        "nan_inf": lambda: nan_inf(payload, rng),
        "out_of_range": lambda: out_of_range(payload, rng),
        "device_mismatch": lambda: device_mismatch(payload, other_device_id),
        "future_clock": lambda: future_clock(payload, params["skew_s"]),
    }
    if kind not in makers:
        raise ValueError(f"{kind} is not a payload fault")
    return encode_payload(makers[kind](), fmt)


PAYLOAD_FAULTS = frozenset(
    {
        "malformed_json",
        "truncated_msgpack",
        "wrong_types",
        "missing_fields",
        "nan_inf",
        "out_of_range",
        "device_mismatch",
        "oversized",
        "future_clock",
    }
)
