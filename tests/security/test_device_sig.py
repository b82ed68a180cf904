"""ledger.device_sig: the signed reading format round-trips, and every mutation fails."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import FormatError, LedgerError, SignatureError, SigningKey
from ledger.device_sig import (
    SIGNING_CONTEXT,
    SignedReading,
    is_signed_reading,
    sign_reading,
    signing_input,
)

KEY = SigningKey.from_seed(bytes(range(1, 33)))
OTHER = SigningKey.from_seed(bytes(range(2, 34)))
TOPIC = "sensors/hs-1/temperature"
READING = b'{"seq":1,"ts":1780000000000,"celsius":20.5}'

device_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
topics = st.text(min_size=1, max_size=60).filter(lambda t: len(t.encode()) <= 65535)
readings = st.binary(min_size=1, max_size=600).filter(lambda b: not is_signed_reading(b))


def test_sign_then_verify() -> None:
    signed = sign_reading(KEY, TOPIC, "hs-1", READING)
    assert is_signed_reading(signed.to_bytes())
    assert not is_signed_reading(READING)
    again = SignedReading.from_bytes(signed.to_bytes())
    assert again == signed
    again.verify(TOPIC, KEY.public_key)
    assert signed.signing_input(TOPIC) == signing_input(TOPIC, "hs-1", bytes(KEY.key_id), READING)
    assert SIGNING_CONTEXT.encode() in signed.signing_input(TOPIC)


@pytest.mark.parametrize(
    ("topic", "key", "message"),
    [
        pytest.param("sensors/hs-2/temperature", KEY, "does not verify", id="another-device"),
        pytest.param("sensors/hs-1/location", KEY, "does not verify", id="another-kind"),
        pytest.param(TOPIC, OTHER, "not with device", id="another-key"),
    ],
)
def test_verification_binds_topic_and_key(topic: str, key: SigningKey, message: str) -> None:
    signed = sign_reading(KEY, TOPIC, "hs-1", READING)
    with pytest.raises(SignatureError, match=message):
        signed.verify(topic, key.public_key)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"version": 2}, "unknown format version 2", id="version"),
        pytest.param({"key_id": b"x" * 31}, "key_id must be 32 bytes", id="short-key-id"),
        pytest.param({"signature": b"x" * 65}, "signature must be 64 bytes", id="long-sig"),
        pytest.param({"reading": b""}, "reading must be 1..", id="empty-reading"),
        pytest.param({"device_id": ""}, "device_id must be 1..128", id="empty-device"),
        pytest.param({"reading": b"\x95\x01"}, "nested", id="nested"),
    ],
)
def test_field_rules(fields: dict[str, object], message: str) -> None:
    good = {"device_id": "hs-1", "key_id": b"k" * 32, "reading": READING, "signature": b"s" * 64}
    with pytest.raises(FormatError, match=message):
        SignedReading(**{**good, **fields})  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(device_id=device_ids, topic=topics, reading=readings)
def test_round_trip(device_id: str, topic: str, reading: bytes) -> None:
    signed = sign_reading(KEY, topic, device_id, reading)
    data = signed.to_bytes()
    assert SignedReading.from_bytes(data) == signed
    assert SignedReading.from_bytes(data).to_bytes() == data
    SignedReading.from_bytes(data).verify(topic, KEY.public_key)


SIGNED = sign_reading(KEY, TOPIC, "hs-1", READING).to_bytes()


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, len(SIGNED) - 1),
    xor=st.integers(1, 255),
)
def test_every_byte_mutation_fails(index: int, xor: int) -> None:
    mutated = SIGNED[:index] + bytes([SIGNED[index] ^ xor]) + SIGNED[index + 1 :]
    with pytest.raises(LedgerError):
        SignedReading.from_bytes(mutated).verify(TOPIC, KEY.public_key)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, len(SIGNED) - 1), extra=st.binary(min_size=1, max_size=8))
def test_truncation_and_trailing_bytes_fail(cut: int, extra: bytes) -> None:
    for data in (SIGNED[:cut], SIGNED + extra):
        with pytest.raises(FormatError):
            SignedReading.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_format_errors(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        SignedReading.from_bytes(b"\x95" + data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), flip=st.integers(0, 10_000))
def test_the_gateway_decoder_refuses_broken_signed_payloads_only_with_decode_errors(
    data: bytes, flip: int
) -> None:
    from gateway.config import LimitsSection
    from gateway.decode import Decoder
    from gateway.device_auth import Authenticator
    from gateway.devices import Device, Registry
    from gateway.errors import DecodeError

    decoder = Decoder(LimitsSection())
    auth = Authenticator(Registry({"hs-1": Device("hs-1", KEY.public_key, "a")}), True)
    good = SIGNED
    index = flip % len(good)
    candidates = [b"\x95" + data, good[:index] + bytes([good[index] ^ 0x5A]) + good[index + 1 :]]
    for payload in candidates:
        try:
            reading, signed = decoder.decode_message(TOPIC, payload, 1_780_000_000_000_000_000)
            pending = auth.admit(TOPIC, reading, signed)
            if pending is not None:
                pending.check()
        except DecodeError:
            continue
        assert payload == good  # only the untouched signed reading gets through
