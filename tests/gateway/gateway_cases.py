"""A catalogue of bad sensor input, each with the field its reject must name.

Used by the decode unit tests and by the end-to-end rejects test, so that both check
the same cases. ``NOW_MS`` is the sensor time of a good reading; the tests decode
with a receive time equal to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

NOW_MS = 1_780_000_000_000
NOW_NS = NOW_MS * 1_000_000


@dataclass(frozen=True)
class Bad:
    id: str
    topic: str
    payload: bytes
    field: str


def _j(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _m(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


T = "sensors/dev-1/temperature"
L = "sensors/dev-1/location"
GOOD_T = {"device_id": "dev-1", "seq": 1, "ts": NOW_MS, "celsius": 21.5}
GOOD_L = {"device_id": "dev-1", "seq": 1, "ts": NOW_MS, "lat": 52.5, "lon": 13.4}


def bad_inputs(now_ms: int = NOW_MS) -> tuple[Bad, ...]:
    """The catalogue for a gateway whose clock reads ``now_ms``."""
    good_t = {**GOOD_T, "ts": now_ms}
    good_l = {**GOOD_L, "ts": now_ms}

    def _t(**changes: object) -> dict[str, object]:
        return {**good_t, **changes}

    def _l(**changes: object) -> dict[str, object]:
        return {**good_l, **changes}

    return _catalogue(now_ms, good_t, good_l, _t, _l)


def _catalogue(
    now_ms: int,
    good_t: dict[str, object],
    good_l: dict[str, object],
    _t: Callable[..., dict[str, object]],
    _l: Callable[..., dict[str, object]],
) -> tuple[Bad, ...]:
    return (
        Bad("empty-payload", T, b"", "payload"),
        Bad("plain-text", T, b"hello", "payload"),
        Bad("truncated-json", T, b'{"device_id":"dev-1","seq":1', "payload"),
        Bad("json-array", T, b"[1,2,3]", "payload"),
        Bad("json-nan", T, b'{"device_id":"dev-1","seq":1,"ts":1,"celsius":NaN}', "payload"),
        Bad("json-infinity", T, b'{"seq":1,"ts":1,"celsius":Infinity}', "payload"),
        Bad("invalid-utf8", T, b'{"device_id":"\xff\xfe","seq":1}', "payload"),
        Bad("duplicate-key", T, b'{"seq":1,"seq":2,"ts":1,"celsius":1}', "seq"),
        Bad("oversized", T, _j(_t(asset_id="a" * 5000)), "payload"),
        Bad("msgpack-truncated", T, _m(good_t)[:-3], "payload"),
        Bad("msgpack-trailing-bytes", T, _m(good_t) + b"\x01", "payload"),
        Bad("msgpack-int-key", T, _m({1: 2, "ts": now_ms}), "payload"),
        Bad("msgpack-nan", T, _m(_t(celsius=float("nan"))), "celsius"),
        Bad("unknown-kind", "sensors/dev-1/humidity", _j(good_t), "topic"),
        Bad("topic-off-template", "other/dev-1/temperature", _j(good_t), "topic"),
        Bad(
            "bad-device-id-in-topic",
            "sensors/dev 1!/temperature",
            _j(_t(device_id=None)),
            "device_id",
        ),
        Bad("device-id-mismatch", T, _j(_t(device_id="dev-2")), "device_id"),
        Bad("device-id-not-string", T, _j(_t(device_id=7)), "device_id"),
        Bad("missing-ts", T, _j({"device_id": "dev-1", "seq": 1, "celsius": 1.0}), "ts"),
        Bad("ts-string", T, _j(_t(ts="2026-01-01")), "ts"),
        Bad("ts-float", T, _j(_t(ts=1.5)), "ts"),
        Bad("ts-far-future", T, _j(_t(ts=now_ms + 3_600_000)), "ts"),
        Bad("ts-before-2000", T, _j(_t(ts=1000)), "ts"),
        Bad("seq-negative", T, _j(_t(seq=-1)), "seq"),
        Bad("seq-too-big", T, _j(_t(seq=2**64)), "seq"),
        Bad("seq-boolean", T, _j(_t(seq=True)), "seq"),
        Bad("missing-celsius", T, _j({"device_id": "dev-1", "seq": 1, "ts": now_ms}), "celsius"),
        Bad("celsius-string", T, _j(_t(celsius="21.5")), "celsius"),
        Bad("celsius-too-hot", T, _j(_t(celsius=5000.0)), "celsius"),
        Bad("celsius-too-cold", T, _j(_t(celsius=-300.0)), "celsius"),
        Bad("celsius-huge-int", T, _j(_t(celsius=10**400)), "celsius"),
        Bad("unknown-field", T, _j(_t(humidity=40)), "humidity"),
        Bad("location-field-on-temperature", T, _j(_t(lat=1.0)), "lat"),
        Bad("lat-out-of-range", L, _j(_l(lat=91.0)), "lat"),
        Bad("lon-out-of-range", L, _j(_l(lon=-181.0)), "lon"),
        Bad("missing-lon", L, _j({k: v for k, v in good_l.items() if k != "lon"}), "lon"),
        Bad("speed-negative", L, _j(_l(speed_mps=-1.0)), "speed_mps"),
        Bad("accuracy-negative", L, _j(_l(accuracy_m=-5.0)), "accuracy_m"),
        Bad("altitude-in-space", L, _j(_l(alt_m=1e6)), "alt_m"),
        Bad("asset-id-bad-format", T, _j(_t(asset_id="bad id with spaces")), "asset_id"),
        Bad("asset-id-object", T, _j(_t(asset_id={"x": 1})), "asset_id"),
        Bad("null-celsius", T, _j(_t(celsius=None)), "celsius"),
    )


BAD_INPUTS = bad_inputs()
