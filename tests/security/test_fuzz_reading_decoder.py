"""Fuzzing the reading decoder (gateway.decode): only DecodeError, quickly, in bounded memory.

A sensor, or anyone who can publish on the broker, chooses the topic and the payload
bytes. For any of them ``Decoder.decode`` returns a reading or raises DecodeError
naming a field; so does ``parse_payload``, which the auditor's tools run on payloads
taken out of bundles.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import msgpack
import pytest
from fuzz_inputs import (
    HUGE_PREFIXES,
    deep,
    fuzz_settings,
    mutated,
    payload_seeds,
    signed_reading_seeds,
)
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import LimitsSection
from gateway.decode import Decoder, parse_payload
from gateway.errors import DecodeError
from gateway.readings import Reading

NOW_NS = 1_764_000_000_000_000_000
LIMITS = LimitsSection()
DECODER = Decoder(LIMITS)
FIELDS = ["device_id", "seq", "ts", "asset_id", "celsius", "lat", "lon", "alt_m", "speed_mps"]
TOPICS = ["sensors/dev-00/temperature", "sensors/trk-1/location"]
SEEDS = (
    payload_seeds()
    + [msgpack.packb(json.loads(seed)) for seed in payload_seeds() if seed.startswith(b"{")]
    + signed_reading_seeds()
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from([1_764_000_000_000, 20.5, -90.0, 180.0, "dev-00"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
documents = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values)
topics = (
    st.sampled_from(TOPICS) | st.text(max_size=80) | st.from_regex(r"sensors/[^/]{0,70}/\w{0,12}")
)


def decode_or_refuse(topic: str, payload: bytes) -> Reading | None:
    try:
        return DECODER.decode(topic, payload, NOW_NS)
    except DecodeError as exc:
        refused = exc
    assert refused.field
    assert refused.problem
    return None


@fuzz_settings(share=0.5)
@given(topic=topics, payload=st.binary(max_size=300))
def test_random_bytes(topic: str, payload: bytes) -> None:
    decode_or_refuse(topic, payload)


@fuzz_settings(share=0.5)
@given(topic=topics, document=documents, fmt=st.sampled_from(["json", "msgpack"]))
def test_structured_documents(topic: str, document: dict[str, Any], fmt: str) -> None:
    try:
        payload = json.dumps(document).encode() if fmt == "json" else msgpack.packb(document)
    except OverflowError:  # msgpack has no integers beyond 64 bits; nor can a sender
        return
    decode_or_refuse(topic, payload)


@fuzz_settings(share=1.0)
@given(topic=st.sampled_from(TOPICS), data=st.data())
def test_mutated_valid_payloads(topic: str, data: st.DataObject) -> None:
    decode_or_refuse(topic, data.draw(mutated(SEEDS)))


@fuzz_settings(share=0.5)
@given(payload=st.binary(max_size=300) | mutated(SEEDS))
def test_parse_payload_only_decode_errors(payload: bytes) -> None:
    try:
        document, fmt = parse_payload(payload)
    except DecodeError:
        return
    assert isinstance(document, dict)
    assert fmt in ("json", "msgpack")


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        pytest.param(b'{"ts":' + deep(b"[", b"]", 9) + b"}", "nested more than 8", id="json-9"),
        pytest.param(b'{"ts":' + deep(b"[", b"]", 200_000)[:4000] + b"}", "nested", id="json-deep"),
        pytest.param(b"\x81\xa2ts" + b"\x91" * 8 + b"\x01", "nested more than 8", id="msgpack-9"),
        pytest.param(b"\x81\xa2ts" + b"\x91" * 3000 + b"\x01", "nested too deeply", id="mp-deep"),
        pytest.param(b'{"ts":[' + b"1," * 64 + b"1]}", "65 items", id="json-array"),
        pytest.param(b"\x81\xa2ts\xdc\x00\x41" + b"\x01" * 65, "max_array_len", id="mp-array"),
        pytest.param(b"\xde\x00\x41" + b"\xa1a\x01" * 65, "max_map_len", id="mp-map"),
        pytest.param(b"\x81\xa2ts\xdd\xff\xff\xff\xff", "max_array_len", id="mp-array32"),
        pytest.param(b"\x81\xa2ts\xdb\xff\xff\xff\xff", "not valid msgpack", id="mp-str32"),
        pytest.param(b"\x81\xa2ts\xc6\xff\xff\xff\xff", "not valid msgpack", id="mp-bin32"),
        pytest.param(b"\x81\xa2ts\xc9\x00\x00\x00\x01\x01\x00", "max_ext_len", id="mp-ext"),
        pytest.param(b'{"ts":' + b"9" * 4400 + b"}", "digits", id="json-bigint"),
    ],
)
def test_size_and_depth_limits_are_named(payload: bytes, problem: str) -> None:
    limits = LimitsSection(max_payload_bytes=8192)
    with pytest.raises(DecodeError, match=problem) as caught:
        Decoder(limits).decode(TOPICS[0], payload, NOW_NS)
    assert caught.value.field == "payload"


def test_limits_come_from_the_config() -> None:
    nested = b'{"ts":1764000000000,"celsius":' + deep(b"[", b"]", 3) + b"}"
    with pytest.raises(DecodeError, match="nested more than 2"):
        Decoder(LimitsSection(max_depth=2)).decode(TOPICS[0], nested, NOW_NS)
    # Within the depth limit the payload is refused for its type, not for its shape.
    with pytest.raises(DecodeError, match="must be a number"):
        Decoder(LimitsSection(max_depth=4)).decode(TOPICS[0], nested, NOW_NS)


def test_brackets_inside_strings_are_not_nesting() -> None:
    payload = b'{"ts":1764000000000,"celsius":1,"asset_id":"[[[[[[[[[[[[{{{{"}'
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(TOPICS[0], payload, NOW_NS)
    assert caught.value.field == "asset_id"


@pytest.mark.parametrize("size", [257, 4096, 65535])
def test_long_topics_are_refused_before_matching(size: int) -> None:
    topic = "sensors/" + "d" * (size - len("sensors//temperature")) + "/temperature"
    with pytest.raises(DecodeError, match=r"limits\.max_topic_bytes") as caught:
        DECODER.decode(topic, b'{"ts":1764000000000,"celsius":1}', NOW_NS)
    assert caught.value.field == "topic"


@pytest.mark.parametrize("prefix", HUGE_PREFIXES, ids=lambda p: p[:1].hex())
def test_huge_msgpack_prefixes_allocate_little(prefix: bytes) -> None:
    payload = b"\x82\xa2ts" + prefix + b"\xa7celsius\x01"
    tracemalloc.start()
    try:
        decode_or_refuse(TOPICS[0], payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"{prefix.hex()}: {peak} bytes traced"


def test_a_payload_over_the_limit_is_refused_by_size() -> None:
    payload = b'{"ts":1764000000000,"celsius":1,' + b" " * LIMITS.max_payload_bytes + b"}"
    with pytest.raises(DecodeError, match=r"limits\.max_payload_bytes"):
        DECODER.decode(TOPICS[0], payload, NOW_NS)
