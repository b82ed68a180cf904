"""The signed device reading vectors (tests/vectors/anchorgate/device_signatures.json).

tests/vectors/make_device_vectors.py wrote them from a fixed seed. The code must still
produce exactly those bytes, and the stored bytes must verify as an outside verifier
following docs/FORMAT.md section 10 would: here with the msgpack rules spelled out
by hand and pyca/cryptography's Ed25519, not with ledger.device_sig.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from make_device_vectors import build_all

from ledger import FormatError, PublicKey, SignatureError
from ledger.device_sig import SignedReading

VECTORS = Path(__file__).resolve().parent / "anchorgate"


def load() -> Any:
    return json.loads((VECTORS / "device_signatures.json").read_text())


def test_code_reproduces_device_vectors_byte_for_byte() -> None:
    text = build_all()["device_signatures.json"]
    assert text == (VECTORS / "device_signatures.json").read_text()


def _str(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 256
    return (bytes([0xA0 + len(data)]) if len(data) < 32 else bytes([0xD9, len(data)])) + data


def _bin(data: bytes) -> bytes:
    assert len(data) < 65536
    head = bytes([0xC4, len(data)]) if len(data) < 256 else b"\xc5" + len(data).to_bytes(2, "big")
    return head + data


def test_valid_vectors_follow_the_spec_by_hand() -> None:
    vectors = load()
    raw = bytes.fromhex(vectors["key"]["public_key"])
    assert hashlib.sha256(raw).hexdigest() == vectors["key"]["key_id"]
    key_id = bytes.fromhex(vectors["key"]["key_id"])
    for case in vectors["valid"]:
        reading = bytes.fromhex(case["reading"])
        signature = bytes.fromhex(case["signature"])
        signing_input = (
            b"\x95"
            + _str(vectors["signing_context"])
            + _str(case["topic"])
            + _str(case["device_id"])
            + _bin(key_id)
            + _bin(reading)
        )
        assert signing_input.hex() == case["signing_input"]
        wire = b"\x95\x01" + _str(case["device_id"]) + _bin(key_id) + _bin(reading)
        wire += _bin(signature)
        assert wire.hex() == case["signed_reading"]
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, signing_input)


def test_valid_vectors_verify_with_the_library() -> None:
    vectors = load()
    key = PublicKey.from_pem(vectors["key"]["public_key_pem"].encode())
    for case in vectors["valid"]:
        signed = SignedReading.from_bytes(bytes.fromhex(case["signed_reading"]))
        assert signed.reading.hex() == case["reading"]
        assert signed.device_id == case["device_id"]
        signed.verify(case["topic"], key)


@pytest.mark.parametrize("case", load()["invalid"], ids=lambda c: c["name"])
def test_invalid_vectors_fail_with_their_error(case: dict[str, Any]) -> None:
    vectors = load()
    key = PublicKey(bytes.fromhex(vectors["key"]["public_key"]))
    data = bytes.fromhex(case["signed_reading"])
    expected = {"format": FormatError, "signature": SignatureError}[case["error"]]
    with pytest.raises(expected):
        SignedReading.from_bytes(data).verify(case["topic"], key)
    if case["error"] == "signature" and SignedReading.from_bytes(data).key_id == key.key_id:
        # An outside verifier refuses it too (a foreign key_id is refused before this).
        signed = SignedReading.from_bytes(data)
        public = Ed25519PublicKey.from_public_bytes(key.raw)
        with pytest.raises(InvalidSignature):
            public.verify(signed.signature, signed.signing_input(case["topic"]))
