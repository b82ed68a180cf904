"""Generate tests/vectors/anchorgate/device_signatures.json: signed device readings.

docs/FORMAT.md section 10 specifies the format. Every case is derived from a fixed
key seed and fixed readings; Ed25519 signatures are deterministic, so running this
again must reproduce the committed file byte for byte
(tests/vectors/test_device_vectors.py checks that). Run it only when the format
changes on purpose, together with a version bump and docs/FORMAT.md:

    .venv/bin/python tests/vectors/make_device_vectors.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack

from ledger import SigningKey
from ledger.device_sig import SIGNING_CONTEXT, sign_reading

OUT = Path(__file__).resolve().parent / "anchorgate"
SEED = bytes(range(100, 132))
OTHER_SEED = bytes(range(200, 232))


def device_key() -> SigningKey:
    return SigningKey.from_seed(SEED)


def _readings() -> list[tuple[str, str, bytes]]:
    """(device_id, topic, reading payload bytes)."""
    temperature = json.dumps(
        {
            "device_id": "hs-0042",
            "seq": 17,
            "ts": 1780000000000,
            "celsius": 71.25,
            "asset_id": "rack-3/psu-1",
        },
        separators=(",", ":"),
    ).encode()
    location: bytes = msgpack.packb(
        {"seq": 903, "ts": 1780000000000, "lat": 52.5163, "lon": 13.3777, "asset_id": "ship-77"},
        use_bin_type=True,
    )
    return [
        ("hs-0042", "sensors/hs-0042/temperature", temperature),
        ("trk-7", "sensors/trk-7/location", location),
    ]


def _flip(data: bytes, index: int) -> str:
    return (data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]).hex()


def device_vectors() -> dict[str, Any]:
    key = device_key()
    other = SigningKey.from_seed(OTHER_SEED)
    valid = []
    for device_id, topic, reading in _readings():
        signed = sign_reading(key, topic, device_id, reading)
        valid.append(
            {
                "device_id": device_id,
                "topic": topic,
                "reading": reading.hex(),
                "signing_input": signed.signing_input(topic).hex(),
                "signature": signed.signature.hex(),
                "signed_reading": signed.to_bytes().hex(),
            }
        )
    first_device, first_topic, first_reading = _readings()[0]
    good = sign_reading(key, first_topic, first_device, first_reading)
    good_bytes = good.to_bytes()
    by_other = sign_reading(other, first_topic, first_device, first_reading).to_bytes()
    # Each invalid case: the payload as received on "topic"; "error" is the class of
    # failure a verifier must report: "format" (not a signed reading) or "signature"
    # (well formed, but not the device key's signature over this topic and reading).
    invalid = [
        {
            "name": "another topic (replayed under another device)",
            "topic": "sensors/hs-0043/temperature",
            "signed_reading": good_bytes.hex(),
            "error": "signature",
        },
        {
            "name": "another kind",
            "topic": "sensors/hs-0042/location",
            "signed_reading": good_bytes.hex(),
            "error": "signature",
        },
        {
            "name": "signature bit flipped",
            "topic": first_topic,
            "signed_reading": _flip(good_bytes, len(good_bytes) - 1),
            "error": "signature",
        },
        {
            "name": "reading byte changed",
            "topic": first_topic,
            "signed_reading": _flip(good_bytes, len(good_bytes) - 70),
            "error": "signature",
        },
        {
            "name": "signed by another key, key_id of another key",
            "topic": first_topic,
            "signed_reading": by_other.hex(),
            "error": "signature",
        },
        {
            "name": "version 2",
            "topic": first_topic,
            "signed_reading": (b"\x95\x02" + good_bytes[2:]).hex(),
            "error": "format",
        },
        {
            "name": "non-canonical (uint8 version)",
            "topic": first_topic,
            "signed_reading": (b"\x95\xcc\x01" + good_bytes[2:]).hex(),
            "error": "format",
        },
        {
            "name": "truncated signature",
            "topic": first_topic,
            "signed_reading": msgpack.packb(
                [1, first_device, bytes(key.key_id), first_reading, good.signature[:63]],
                use_bin_type=True,
            ).hex(),
            "error": "format",
        },
        {
            "name": "trailing byte",
            "topic": first_topic,
            "signed_reading": (good_bytes + b"\x00").hex(),
            "error": "format",
        },
    ]
    return {
        "description": "signed device readings, docs/FORMAT.md section 10; the device key "
        "is Ed25519 from the 32-byte seed below (RFC 8032)",
        "signing_context": SIGNING_CONTEXT,
        "key": {
            "seed": SEED.hex(),
            "public_key": key.public_key.raw.hex(),
            "key_id": key.key_id.hex(),
            "public_key_pem": key.public_key.to_pem().decode(),
        },
        "valid": valid,
        "invalid": invalid,
    }


def build_all() -> dict[str, str]:
    return {"device_signatures.json": json.dumps(device_vectors(), indent=1) + "\n"}


def main() -> None:
    for name, text in build_all().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
