"""Signed device readings: a reading payload wrapped with the device's Ed25519 signature.

docs/FORMAT.md section 10 is the normative text. A device that holds an Ed25519 key
publishes, instead of its bare reading payload (a JSON object or msgpack map,
docs/READINGS.md), the canonical msgpack array::

    [version = 1, device_id, key_id (32 bytes), reading (the payload bytes), signature (64)]

The signature covers a domain-separated *signing input* that also binds the MQTT topic,
so a signed reading cannot be replayed under another device's (or another kind's)
topic::

    canonical msgpack [SIGNING_CONTEXT, topic, device_id, key_id, reading]

The gateway anchors the whole payload inside the leaf envelope (section 3), so the
signature travels with the reading to any auditor, who can check it from the envelope
(topic and payload) and the device's public key alone.

Primitives raise: :class:`~ledger.errors.FormatError` for bytes that are not a signed
reading, :class:`~ledger.errors.SignatureError` for a key that is not the device's or
a signature that does not verify.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.canonical import field_bytes, field_int, field_str, pack, unpack_array
from ledger.envelope import MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES
from ledger.errors import FormatError, SignatureError
from ledger.keys import SIGNATURE_SIZE, PublicKey, SigningKey

SIGNED_READING_VERSION = 1
SIGNING_CONTEXT = "anchorgate/device-reading/v1"
# A signed reading is a msgpack fixarray of 5 elements; a reading payload is a JSON
# object or a msgpack map, so the first byte tells them apart.
SIGNED_READING_MARKER = 0x95
KEY_ID_SIZE = 32
MAX_DEVICE_ID_BYTES = 128
_FIELDS = 5
_WHAT = "signed reading"


def is_signed_reading(payload: bytes) -> bool:
    """True when ``payload`` claims to be a signed reading (its first byte is 0x95)."""
    return payload[:1] == bytes([SIGNED_READING_MARKER])


def signing_input(topic: str, device_id: str, key_id: bytes, reading: bytes) -> bytes:
    """The bytes a device signs: canonical msgpack [context, topic, device_id, key_id, reading]."""
    field_str(topic, _WHAT, "topic", MAX_TOPIC_BYTES)
    return pack([SIGNING_CONTEXT, topic, device_id, key_id, reading])


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A reading payload with the signature of the device that produced it."""

    device_id: str
    key_id: bytes
    reading: bytes
    signature: bytes
    version: int = SIGNED_READING_VERSION

    def __post_init__(self) -> None:
        if self.version != SIGNED_READING_VERSION:
            raise FormatError(
                f"{_WHAT}: unknown format version {self.version!r} (this code knows "
                f"version {SIGNED_READING_VERSION})"
            )
        field_str(self.device_id, _WHAT, "device_id", MAX_DEVICE_ID_BYTES)
        field_bytes(self.key_id, _WHAT, "key_id", KEY_ID_SIZE)
        field_bytes(self.reading, _WHAT, "reading")
        if not 0 < len(self.reading) <= MAX_PAYLOAD_BYTES:
            raise FormatError(
                f"{_WHAT}: field reading must be 1..{MAX_PAYLOAD_BYTES} bytes, "
                f"is {len(self.reading)}"
            )
        if is_signed_reading(self.reading):
            raise FormatError(f"{_WHAT}: field reading is itself a signed reading (nested)")
        field_bytes(self.signature, _WHAT, "signature", SIGNATURE_SIZE)

    def to_bytes(self) -> bytes:
        """The canonical encoding: [version, device_id, key_id, reading, signature]."""
        return pack([self.version, self.device_id, self.key_id, self.reading, self.signature])

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedReading:
        """Decode strictly (canonical msgpack, known version); FormatError names the field."""
        fields = unpack_array(data, _WHAT, _FIELDS)
        version = field_int(fields[0], _WHAT, "version")
        if version != SIGNED_READING_VERSION:
            raise FormatError(
                f"{_WHAT}: unknown format version {version} (this code knows "
                f"version {SIGNED_READING_VERSION})"
            )
        return cls(
            version=version,
            device_id=field_str(fields[1], _WHAT, "device_id", MAX_DEVICE_ID_BYTES),
            key_id=field_bytes(fields[2], _WHAT, "key_id", KEY_ID_SIZE),
            reading=field_bytes(fields[3], _WHAT, "reading"),
            signature=field_bytes(fields[4], _WHAT, "signature", SIGNATURE_SIZE),
        )

    def signing_input(self, topic: str) -> bytes:
        """What the signature covers when the reading is published on ``topic``."""
        return signing_input(topic, self.device_id, self.key_id, self.reading)

    def verify(self, topic: str, key: PublicKey) -> None:
        """Raise SignatureError unless ``key`` is the named key and signed this on ``topic``."""
        if key.key_id != self.key_id:
            raise SignatureError(
                f"{_WHAT}: signed with key {self.key_id.hex()[:16]}, not with device "
                f"{self.device_id!r}'s key {key.key_id.hex()[:16]}"
            )
        try:
            key.verify(self.signature, self.signing_input(topic))
        except SignatureError:
            raise SignatureError(
                f"{_WHAT}: the signature of device {self.device_id!r} does not verify "
                f"(key {self.key_id.hex()[:16]}, topic {topic[:80]!r})"
            ) from None


def sign_reading(key: SigningKey, topic: str, device_id: str, reading: bytes) -> SignedReading:
    """The device's signed form of ``reading`` (payload bytes) for publishing on ``topic``."""
    key_id = bytes(key.key_id)
    field_str(device_id, _WHAT, "device_id", MAX_DEVICE_ID_BYTES)
    signature = key.sign(signing_input(topic, device_id, key_id, reading))
    return SignedReading(device_id=device_id, key_id=key_id, reading=reading, signature=signature)
