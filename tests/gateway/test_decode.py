"""Decoding and validation: good readings in both formats, and every bad input named."""

from __future__ import annotations

import contextlib
import json

import msgpack
import pytest
from gateway_cases import BAD_INPUTS, GOOD_L, GOOD_T, NOW_MS, NOW_NS, Bad
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import LimitsSection
from gateway.decode import Decoder, detect_format, topic_pattern
from gateway.errors import DecodeError
from gateway.readings import (
    LocationReading,
    TemperatureReading,
    encode_reading,
    topic_for,
)

DECODER = Decoder(LimitsSection())


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_temperature_round_trips_through_the_schema(fmt: str) -> None:
    reading = TemperatureReading("dev-1", 7, NOW_MS, -18.25, asset_id="ship-9/box-3")
    payload = encode_reading(reading, fmt)  # type: ignore[arg-type]
    assert DECODER.decode(topic_for("dev-1", "temperature"), payload, NOW_NS) == reading


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_location_round_trips_through_the_schema(fmt: str) -> None:
    reading = LocationReading("trk-2", None, NOW_MS, -33.9, 151.2, 12.0, 3.5, 4.0, "ship-1")
    payload = encode_reading(reading, fmt)  # type: ignore[arg-type]
    assert DECODER.decode(topic_for("trk-2", "location"), payload, NOW_NS) == reading


def test_device_id_may_be_left_out_and_integers_are_numbers() -> None:
    payload = json.dumps({"ts": NOW_MS, "celsius": 20}).encode()
    reading = DECODER.decode("sensors/dev-1/temperature", payload, NOW_NS)
    assert reading == TemperatureReading("dev-1", None, NOW_MS, 20.0)
    assert isinstance(reading.celsius, float)


def test_good_catalogue_readings_decode() -> None:
    DECODER.decode("sensors/dev-1/temperature", json.dumps(GOOD_T).encode(), NOW_NS)
    DECODER.decode("sensors/dev-1/location", msgpack.packb(GOOD_L), NOW_NS)


def test_the_catalogue_has_at_least_25_distinct_cases() -> None:
    assert len({bad.id for bad in BAD_INPUTS}) == len(BAD_INPUTS) >= 25


@pytest.mark.parametrize("bad", [pytest.param(b, id=b.id) for b in BAD_INPUTS])
def test_bad_input_is_refused_naming_the_field(bad: Bad) -> None:
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(bad.topic, bad.payload, NOW_NS)
    assert caught.value.field == bad.field
    assert str(caught.value).startswith(f"{bad.field}: ")
    assert len(caught.value.problem) > 5


def test_reasons_read_well() -> None:
    with pytest.raises(DecodeError, match=r"celsius: 5000 is outside -100\.\.300"):
        DECODER.decode("sensors/d/temperature", b'{"ts":%d,"celsius":5000}' % NOW_MS, NOW_NS)
    with pytest.raises(DecodeError, match=r"ts: .* 3600\.0 s ahead .*max_clock_skew is 300 s"):
        DECODER.decode(
            "sensors/d/temperature", b'{"ts":%d,"celsius":5}' % (NOW_MS + 3_600_000), NOW_NS
        )
    with pytest.raises(DecodeError, match=r"device_id: 'x' differs from 'd' in the topic"):
        DECODER.decode("sensors/d/temperature", b'{"device_id":"x"}', NOW_NS)


def test_limits_come_from_config() -> None:
    strict = Decoder(LimitsSection(celsius_min=0.0, celsius_max=10.0, max_payload_bytes=64))
    with pytest.raises(DecodeError, match=r"celsius: 11 is outside 0\.\.10"):
        strict.decode("sensors/d/temperature", b'{"ts":%d,"celsius":11}' % NOW_MS, NOW_NS)
    with pytest.raises(DecodeError, match="max_payload_bytes"):
        strict.decode("sensors/d/temperature", b"{" + b" " * 80 + b"}", NOW_NS)


def test_custom_topic_template() -> None:
    decoder = Decoder(LimitsSection(), "plant/{kind}/by-device/{device_id}")
    payload = b'{"ts":%d,"celsius":5}' % NOW_MS
    assert decoder.decode("plant/temperature/by-device/hs-4", payload, NOW_NS).device_id == "hs-4"
    assert topic_pattern("a/{device_id}/{kind}").fullmatch("a/x/y") is not None


def test_detect_format() -> None:
    assert detect_format(b'  {"a":1}') == "json"
    assert detect_format(msgpack.packb({"a": 1})) == "msgpack"
    with pytest.raises(DecodeError):
        detect_format(b"\x00")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        DECODER.decode("sensors/dev-1/temperature", payload, NOW_NS)


@given(st.dictionaries(st.sampled_from([*sorted(GOOD_L), "x"]), st.from_type(object), max_size=8))
def test_arbitrary_maps_never_raise_anything_but_decode_error(doc: dict[str, object]) -> None:
    try:
        payload = msgpack.packb(doc, use_bin_type=True, default=repr)
    except (TypeError, ValueError, OverflowError):
        return
    with contextlib.suppress(DecodeError):
        DECODER.decode("sensors/dev-1/location", payload, NOW_NS)
