"""Decode one MQTT message into a validated reading, or say precisely why not.

The schema is gateway.readings (prose: docs/READINGS.md); the limits come from
config ``[limits]``. :meth:`Decoder.decode` returns a :class:`~gateway.readings.Reading`
or raises :class:`~gateway.errors.DecodeError` naming the field and the problem. It
never raises anything else for any input: a sensor cannot crash the gateway.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgpack

from gateway.config import LimitsSection
from gateway.errors import DecodeError
from gateway.readings import (
    DEFAULT_TOPIC_TEMPLATE,
    KINDS,
    LocationReading,
    PayloadFormat,
    Reading,
    TemperatureReading,
)
from ledger import FormatError
from ledger.device_sig import SignedReading, is_signed_reading

MAX_SEQ = 2**63 - 1
# An unknown key like this names itself in a reject; any other is quoted, shortened.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_COMMON_FIELDS = frozenset({"device_id", "seq", "ts", "asset_id"})
# The fields a payload of each kind may have; any other is refused.
KIND_FIELDS: dict[str, frozenset[str]] = {
    "temperature": _COMMON_FIELDS | {"celsius"},
    "location": _COMMON_FIELDS | {"lat", "lon", "alt_m", "speed_mps", "accuracy_m"},
}


def topic_pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching the topics of ``template``, with named groups."""
    parts = re.split(r"(\{device_id\}|\{kind\})", template)
    regex = "".join(
        f"(?P<{p[1:-1]}>[^/]+)" if p in ("{device_id}", "{kind}") else re.escape(p) for p in parts
    )
    return re.compile(regex)


def detect_format(payload: bytes) -> PayloadFormat:
    """JSON when the payload starts with ``{`` (after whitespace), msgpack for a map header."""
    stripped = payload.lstrip(b" \t\r\n")
    if stripped[:1] == b"{":
        return "json"
    if payload and (0x80 <= payload[0] <= 0x8F or payload[0] in (0xDE, 0xDF)):
        return "msgpack"
    raise DecodeError("payload", "neither a JSON object nor a msgpack map")


def _reject_constant(name: str) -> float:
    raise DecodeError("payload", f"JSON constant {name} is not allowed (numbers must be finite)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DecodeError(key, "appears twice in the object")
        result[key] = value
    return result


# One decoder for all payloads: json.loads() with these options builds a new one per call.
_JSON = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def unwrap_signed(payload: bytes) -> SignedReading:
    """A signed reading (docs/FORMAT.md section 10), its signature not yet checked."""
    try:
        return SignedReading.from_bytes(payload)
    except FormatError as exc:
        raise DecodeError("signature", f"malformed signed reading: {exc}") from None


_DEFAULTS = LimitsSection()
_CONTAINERS = (dict, list)
# Strings outside and every byte but a bracket, so that what is left is the nesting.
_NOT_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[^"\[\]{}]+')


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (checked before parsing)."""
    openers = text.count("{") + text.count("[")
    if openers <= 1:  # a flat reading: no need to look closer
        return openers
    deepest = depth = 0
    for char in _NOT_BRACKETS.sub("", text):
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        deepest = max(deepest, depth)
    return deepest


def _check_shape(document: object, max_depth: int, max_items: int) -> None:
    """Refuse containers nested deeper than ``max_depth`` or with over ``max_items`` items."""
    if type(document) is dict and len(document) <= max_items:
        for value in document.values():
            if type(value) in _CONTAINERS:  # json and msgpack build exactly these
                break
        else:
            return  # a flat reading, the usual case
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            raise DecodeError("payload", f"nested more than {max_depth} deep (limits.max_depth)")
        if len(value) > max_items:
            raise DecodeError(
                "payload",
                f"an array or object of {len(value)} items, more than "
                f"limits.max_container_items ({max_items})",
            )
        items = value.values() if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in items)


def parse_payload(
    payload: bytes,
    max_depth: int = _DEFAULTS.max_depth,
    max_items: int = _DEFAULTS.max_container_items,
) -> tuple[dict[str, Any], PayloadFormat]:
    """The payload's top-level mapping and its format; any flaw is a DecodeError.

    Nesting deeper than ``max_depth`` and arrays or maps of more than ``max_items``
    items are refused (msgpack before anything is allocated for them, JSON nesting
    before parsing), so a hostile payload costs no more than its size. A signed
    reading is unwrapped: the mapping and format are those of the reading inside (the
    signature is not checked here).
    """
    if is_signed_reading(payload):
        payload = unwrap_signed(payload).reading
    fmt = detect_format(payload)
    if fmt == "json":
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("payload", f"not UTF-8 at byte {exc.start}") from None
        if _json_depth(text) > max_depth:
            raise DecodeError("payload", f"nested more than {max_depth} deep (limits.max_depth)")
        try:
            document = _JSON.decode(text)
        except json.JSONDecodeError as exc:
            raise DecodeError("payload", f"not valid JSON: {exc.msg} at char {exc.pos}") from None
        except RecursionError:
            raise DecodeError("payload", "JSON nested too deeply") from None
        except ValueError as exc:  # e.g. an integer literal over Python's digit limit
            raise DecodeError("payload", f"not usable JSON: {exc}") from None
    else:
        try:
            document = msgpack.unpackb(
                payload,
                raw=False,
                strict_map_key=True,
                max_array_len=max_items,
                max_map_len=max_items,
                max_str_len=len(payload),
                max_bin_len=len(payload),
                max_ext_len=0,
            )
        except msgpack.ExtraData:
            raise DecodeError("payload", "extra bytes after the msgpack map") from None
        except UnicodeDecodeError:
            raise DecodeError("payload", "msgpack string is not UTF-8") from None
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            # msgpack's own nesting limit (1024) raises a ValueError with no message.
            problem = str(exc) or "nested too deeply"
            raise DecodeError("payload", f"not valid msgpack: {problem}") from None
        if isinstance(document, dict):
            for key in document:
                if not isinstance(key, str):
                    raise DecodeError("payload", f"msgpack map key {key!r} is not a string")
    if not isinstance(document, dict):
        raise DecodeError("payload", "not an object/map")
    _check_shape(document, max_depth, max_items)
    return document, fmt


class Decoder:
    """Validates payloads against the schema, the topic template and the configured limits."""

    def __init__(self, limits: LimitsSection, topic_template: str = DEFAULT_TOPIC_TEMPLATE) -> None:
        self.limits = limits
        self._topic = topic_pattern(topic_template)
        self._device_id = re.compile(limits.device_id_pattern)
        self._asset_id = re.compile(limits.asset_id_pattern)

    def decode(self, topic: str, payload: bytes, received_ns: int) -> Reading:
        """The reading in ``payload``, received on ``topic`` at ``received_ns`` (Unix ns)."""
        return self.decode_message(topic, payload, received_ns)[0]

    def decode_message(
        self, topic: str, payload: bytes, received_ns: int
    ) -> tuple[Reading, SignedReading | None]:
        """The reading, and its signed wrapper when the device signed it (not yet verified).

        A signed payload must name the topic's device; the reading inside is validated
        like any other.
        """
        limits = self.limits
        if len(payload) > limits.max_payload_bytes:
            raise DecodeError(
                "payload",
                f"{len(payload)} bytes, more than limits.max_payload_bytes "
                f"({limits.max_payload_bytes})",
            )
        # A topic of n characters has at most 4n bytes of UTF-8: count only when it matters.
        topic_bytes = len(topic) * 4
        if topic_bytes > limits.max_topic_bytes:
            topic_bytes = len(topic.encode("utf-8", "surrogatepass"))
        if topic_bytes > limits.max_topic_bytes:
            raise DecodeError(
                "topic",
                f"{topic_bytes} bytes, more than limits.max_topic_bytes ({limits.max_topic_bytes})",
            )
        match = self._topic.fullmatch(topic)
        if match is None:
            raise DecodeError("topic", f"{topic!r} does not match the topic template")
        topic_device = match["device_id"]
        kind = match["kind"]
        if kind not in KINDS:
            raise DecodeError("topic", f"unknown reading kind {kind!r} (known: {', '.join(KINDS)})")
        if self._device_id.fullmatch(topic_device) is None:
            raise DecodeError("device_id", f"{topic_device!r} in the topic is not a valid id")
        signed = None
        if is_signed_reading(payload):
            signed = unwrap_signed(payload)
            if signed.device_id != topic_device:
                raise DecodeError(
                    "device_id",
                    f"{signed.device_id[:80]!r} in the signed reading differs from "
                    f"{topic_device!r} in the topic",
                )
            payload = signed.reading
        document, _fmt = parse_payload(payload, limits.max_depth, limits.max_container_items)
        if not document.keys() <= KIND_FIELDS[kind]:
            unknown = sorted(set(document) - KIND_FIELDS[kind])
            name = unknown[0]
            if _PLAIN_NAME.fullmatch(name) is None:  # the sender chose it: quote a short piece
                raise DecodeError("payload", f"{name[:40]!r} is not a field of a {kind} reading")
            raise DecodeError(name, f"is not a field of a {kind} reading")
        fields = _Fields(document)
        device_id = fields.optional_str("device_id")
        if device_id is not None and device_id != topic_device:
            raise DecodeError(
                "device_id", f"{device_id!r} differs from {topic_device!r} in the topic"
            )
        seq = fields.integer("seq", required=False)
        if seq is not None and not 0 <= seq <= MAX_SEQ:
            raise DecodeError("seq", f"{seq} is outside 0..{MAX_SEQ}")
        ts = fields.integer("ts", required=True)
        assert ts is not None
        latest_ms = received_ns // 1_000_000 + int(limits.max_clock_skew * 1000)
        if ts > latest_ms:
            raise DecodeError(
                "ts",
                f"{ts} is {(ts - received_ns // 1_000_000) / 1000:.1f} s ahead of the gateway "
                f"clock (limits.max_clock_skew is {limits.max_clock_skew:g} s)",
            )
        if ts < limits.min_ts:
            raise DecodeError("ts", f"{ts} is before limits.min_ts ({limits.min_ts})")
        asset_id = fields.optional_str("asset_id")
        if asset_id is not None and self._asset_id.fullmatch(asset_id) is None:
            raise DecodeError("asset_id", f"{asset_id[:80]!r} is not a valid asset id")
        if kind == "temperature":
            celsius = fields.number("celsius", limits.celsius_min, limits.celsius_max, True)
            assert celsius is not None
            return TemperatureReading(topic_device, seq, ts, celsius, asset_id), signed
        lat = fields.number("lat", -90.0, 90.0, True)
        lon = fields.number("lon", -180.0, 180.0, True)
        assert lat is not None
        assert lon is not None
        location = LocationReading(
            topic_device,
            seq,
            ts,
            lat,
            lon,
            alt_m=fields.number("alt_m", limits.min_altitude_m, limits.max_altitude_m, False),
            speed_mps=fields.number("speed_mps", 0.0, limits.max_speed_mps, False),
            accuracy_m=fields.number("accuracy_m", 0.0, limits.max_accuracy_m, False),
            asset_id=asset_id,
        )
        return location, signed


class _Fields:
    """Typed access to a payload mapping; every miss is a DecodeError naming the field."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    def _get(self, name: str, required: bool) -> object:
        value = self._document.get(name)
        if value is None and required:
            problem = "is null" if name in self._document else "is missing"
            raise DecodeError(name, problem)
        return value

    def optional_str(self, name: str) -> str | None:
        value = self._get(name, required=False)
        if value is None or isinstance(value, str):
            return value
        raise DecodeError(name, f"must be a string, got {_describe(value)}")

    def integer(self, name: str, required: bool) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(name, f"must be an integer, got {_describe(value)}")
        return value

    def number(self, name: str, low: float, high: float, required: bool) -> float | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DecodeError(name, f"must be a number, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise DecodeError(name, f"an integer too large, outside {low:g}..{high:g}") from None
        if not math.isfinite(number):
            raise DecodeError(name, f"must be a finite number, got {value!r}")
        if not low <= number <= high:
            raise DecodeError(name, f"{number:g} is outside {low:g}..{high:g}")
        return number


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < 10**20):
        return repr(value)
    return f"a {type(value).__name__}"
