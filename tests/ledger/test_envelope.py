"""ledger.envelope: canonical round trips and strict decoding."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.envelope import MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES, Envelope, envelope_bytes
from ledger.errors import FormatError
from ledger.merkle import hash_leaf

SALT = bytes(range(16))


def good() -> Envelope:
    return Envelope.create("sensors/t-1/temperature", b'{"celsius":4.2}', 1_700_000_000_000, SALT)


@given(
    salt=st.binary(min_size=16, max_size=16),
    topic=st.text(min_size=1, max_size=80),
    received_ns=st.integers(0, 2**64 - 1),
    payload=st.binary(max_size=600),
)
def test_round_trip(salt: bytes, topic: str, received_ns: int, payload: bytes) -> None:
    envelope = Envelope.create(topic, payload, received_ns, salt)
    data = envelope.to_bytes()
    assert Envelope.from_bytes(data) == envelope
    assert envelope.leaf_hash() == hash_leaf(data)


def _outcome(make: object) -> bytes | str:
    """The bytes ``make()`` returns, or the message of the FormatError it raises."""
    try:
        return make()  # type: ignore[operator,no-any-return]
    except FormatError as exc:
        return f"FormatError: {exc}"


# Valid and invalid values of every field, the edges included.
_any = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.binary(max_size=20))


@given(
    salt=st.one_of(st.binary(min_size=15, max_size=17), _any),
    topic=st.one_of(
        st.text(max_size=40),
        st.sampled_from(["é" * (MAX_TOPIC_BYTES // 2), "x" * MAX_TOPIC_BYTES, "x" * 65536]),
        _any,
    ),
    received_ns=st.one_of(st.integers(-(2**65), 2**65), _any),
    payload=st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"p" * MAX_PAYLOAD_BYTES, b"p" * (MAX_PAYLOAD_BYTES + 1)]),
        st.text(max_size=5),
        _any,
    ),
)
def test_envelope_bytes_is_the_envelope_path(
    salt: object, topic: object, received_ns: object, payload: object
) -> None:
    # The writer's shortcut gives the same bytes, or the same error, for any input.
    quick = _outcome(lambda: envelope_bytes(topic, payload, received_ns, salt))  # type: ignore[arg-type]
    full = _outcome(lambda: Envelope.create(topic, payload, received_ns, salt).to_bytes())  # type: ignore[arg-type]
    assert quick == full


def test_salt_changes_the_leaf_hash() -> None:
    a = good()
    b = Envelope.create(a.topic, a.payload, a.received_ns, bytes(16))
    assert a.leaf_hash() != b.leaf_hash()


def pack(fields: object) -> bytes:
    return bytes(msgpack.packb(fields, use_bin_type=True))


GOOD = [1, SALT, "sensors/t-1/temperature", 5, b"{}"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(pack([2, *GOOD[1:]]), "unknown format version 2", id="version"),
        pytest.param(pack(GOOD[:4]), "expected 5 fields", id="missing-field"),
        pytest.param(pack([*GOOD, 0]), "expected 5 fields", id="extra-field"),
        pytest.param(pack([1, SALT[:15], *GOOD[2:]]), "salt must be 16 bytes", id="short-salt"),
        pytest.param(pack([1, "x" * 16, *GOOD[2:]]), "salt must be bytes", id="salt-as-str"),
        pytest.param(pack([1, SALT, b"topic", 5, b""]), "topic must be a string", id="topic-bin"),
        pytest.param(pack([1, SALT, "", 5, b""]), "topic must be 1", id="empty-topic"),
        pytest.param(pack([1, SALT, "t", -1, b""]), "received_ns = -1", id="negative-time"),
        pytest.param(pack([1, SALT, "t", 5.0, b""]), "must be an integer", id="float-time"),
        pytest.param(pack([1, SALT, "t", True, b""]), "must be an integer", id="bool-time"),
        pytest.param(pack([1, SALT, "t", 5, "{}"]), "payload must be bytes", id="payload-str"),
        pytest.param(pack({"v": 1}), "expected a msgpack array", id="map"),
        pytest.param(pack(GOOD) + b"\x00", "not a msgpack value", id="trailing-bytes"),
        pytest.param(pack(GOOD)[:-1], "not a msgpack value", id="truncated"),
        pytest.param(b"", "not a msgpack value", id="empty"),
        # 5 as uint16 (0xcd 00 05) instead of a positive fixint: same value, other bytes.
        pytest.param(
            pack(GOOD[:3]).replace(b"\x93", b"\x95", 1) + b"\xcd\x00\x05" + pack([b"{}"])[1:],
            "not the canonical",
            id="non-canonical-int",
        ),
        pytest.param(
            b"\xdc\x00\x05" + pack(GOOD)[1:], "not the canonical", id="non-canonical-array"
        ),
        pytest.param(
            pack([1, SALT, "t", 5, b""]).replace(b"\xc4\x00", b"\xc5\x00\x00"),
            "not the canonical",
            id="non-canonical-bin",
        ),
        pytest.param(
            pack([1, SALT, b"\xff", 5, b""]).replace(b"\xc4\x01\xff", b"\xa1\xff"),
            "not a msgpack value",
            id="invalid-utf8",
        ),
    ],
)
def test_strict_decoding_refuses(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        Envelope.from_bytes(data)


def test_canonical_sample_decodes() -> None:
    assert Envelope.from_bytes(pack(GOOD)).received_ns == 5


def test_construction_is_validated() -> None:
    with pytest.raises(FormatError, match="salt"):
        Envelope.create("t", b"", 0, b"short")
    with pytest.raises(FormatError, match="version"):
        Envelope(SALT, "t", 0, b"", version=3)
