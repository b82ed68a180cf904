"""Two verifiers, one spec: the Python ledger and tests/interop/verify.mjs must agree.

verify.mjs was written from docs/FORMAT.md alone, in JavaScript, by someone who did
not read ledger/. These tests run it (when Node.js is installed) on the format
vectors and on many mutated bundles and signed device readings, and compare its
verdict and first failed check with the Python verifier's: a disagreement is a bug in
one of them or a gap in the spec.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import pytest

from gateway.verify_report import device_signature
from ledger import FormatError, PublicKey, verify_bundle
from ledger.device_sig import SignedReading, sign_reading
from ledger.envelope import Envelope
from ledger.keys import SigningKey

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "vectors"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


def node(*args: str) -> tuple[int, dict[str, Any]]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(HERE / "verify.mjs"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def vector_bundle() -> dict[str, Any]:
    case: dict[str, Any] = json.loads((VECTORS / "anchorgate" / "bundle.json").read_text())
    return case


@pytest.mark.parametrize(
    ("command", "file"),
    [
        ("envelopes", "anchorgate/envelopes.json"),
        ("chain", "anchorgate/chain.json"),
        ("rotation", "anchorgate/rotation.json"),
        ("rfc6962", "rfc6962/inclusion.json"),
        ("rfc6962", "rfc6962/consistency.json"),
        ("devices", "anchorgate/device_signatures.json"),
    ],
)
def test_js_verifier_accepts_the_vectors(command: str, file: str) -> None:
    code, result = node(command, str(VECTORS / file))
    assert code == 0, result


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mutations(bundle: dict[str, Any]) -> list[tuple[str, Any]]:
    """Named mutations of a valid bundle (a dict, or raw text for the byte-level ones)."""
    out: list[tuple[str, Any]] = [("unchanged", bundle)]

    def with_(name: str, change: Any) -> None:
        mutated = copy.deepcopy(bundle)
        change(mutated)
        out.append((name, mutated))

    def edit_envelope(b: dict[str, Any]) -> None:
        data = bytearray(base64.b64decode(b["readings"][0]["envelope"]))
        data[-1] ^= 1
        b["readings"][0]["envelope"] = b64(bytes(data))

    with_("edited-envelope", edit_envelope)
    with_(
        "swapped-index",
        lambda b: b["readings"][1].update(leaf_index=b["readings"][1]["leaf_index"] - 1),
    )
    with_(
        "batch-size",
        lambda b: b["readings"][0].update(batch_size=b["readings"][0]["batch_size"] + 1),
    )
    with_("no-blocks", lambda b: b.update(blocks=[]))
    with_("missing-blocks-member", lambda b: b.pop("blocks"))
    with_("unknown-version", lambda b: b.update(format="anchorgate-proof/9"))
    with_("format-not-string", lambda b: b.update(format=1))
    with_("short-log-proof", lambda b: b["blocks"][0]["log_proof"].pop())
    with_("log-size", lambda b: b["blocks"][0].update(log_size=b["blocks"][0]["log_size"] + 1))
    with_("truncated-chain", lambda b: b.update(head=copy.deepcopy(b["extends"]) | {}))
    with_("head-signature", lambda b: b["head"].update(signature=b["blocks"][0]["signature"]))
    with_("key-id", lambda b: b.update(key_id=b["key_id"].upper()))
    with_("no-readings", lambda b: b.update(readings=[]))
    with_("float-height", lambda b: b["head"].update(height=float(b["head"]["height"])))
    with_("huge-height", lambda b: b["head"].update(height=2**70))
    with_("extends-consistency", lambda b: b["extends"]["consistency"].reverse())
    with_("extends-dropped-proof", lambda b: b["extends"]["log_proof"].pop())
    with_("path-hash-31-bytes", lambda b: b["readings"][0]["path"].__setitem__(0, b64(bytes(31))))
    with_("duplicate-reading", lambda b: b["readings"].append(copy.deepcopy(b["readings"][0])))
    rng = random.Random(7)
    text = json.dumps(bundle)
    for i in range(25):
        position = rng.randrange(len(text))
        flipped = (
            text[:position]
            + chr(ord(text[position]) ^ (1 << rng.randrange(6)))
            + text[position + 1 :]
        )
        out.append((f"flip-{i}", flipped))
    out.append(("trailing-garbage", text + "x"))
    out.append(("duplicate-member", text.replace('"format"', '"format": "x", "format"', 1)))
    return out


def test_both_verifiers_agree_on_every_mutation(tmp_path: Path) -> None:
    case = vector_bundle()
    bundle = json.loads(case["bundle_json"])
    pem = tmp_path / "gateway.pub"
    pem.write_text(case["public_key_pem"])
    key = PublicKey.load(pem)
    trusted = case["older_head_hash"]
    disagreements = []
    for name, mutated in mutations(bundle):
        text = mutated if isinstance(mutated, str) else json.dumps(mutated)
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        report = verify_bundle(text.encode(), key, bytes.fromhex(trusted))
        python = (report.valid, None if report.failure is None else report.failure.name)
        _, js = node("bundle", str(path), str(pem), trusted)
        if python != (js["valid"], js["check"]):
            disagreements.append((name, python, (js["valid"], js["check"])))
    assert not disagreements


def rotation_mutations(bundle: dict[str, Any]) -> list[tuple[str, Any]]:
    """Mutations of a bundle across key rotations (anchorgate-proof/2)."""
    out = mutations(bundle)

    def with_(name: str, change: Any) -> None:
        mutated = copy.deepcopy(bundle)
        change(mutated)
        out.append((name, mutated))

    with_("no-rotations", lambda b: b.update(rotations=[]))
    with_("missing-rotations-member", lambda b: b.pop("rotations"))
    with_("last-rotation-dropped", lambda b: b["rotations"].pop())
    with_("rotations-reversed", lambda b: b["rotations"].reverse())
    with_("rotation-repeated", lambda b: b["rotations"].append(b["rotations"][-1]))
    with_("block-as-rotation", lambda b: b.update(rotations=[b["blocks"][0], *b["rotations"]]))
    with_("as-format-1", lambda b: b.update(format="anchorgate-proof/1"))
    with_(
        "rotation-signature", lambda b: b["rotations"][0].update(signature=b["head"]["signature"])
    )
    with_("rotation-log-proof", lambda b: b["rotations"][0]["log_proof"].reverse())
    with_("rotation-log-size", lambda b: b["rotations"][0].update(log_size=1))
    with_("rotation-height", lambda b: b["rotations"][0].update(height=7))

    def new_key_edited(b: dict[str, Any]) -> None:
        data = bytearray(base64.b64decode(b["rotations"][0]["header"]))
        data[-1] ^= 1  # the last byte of new_key
        b["rotations"][0]["header"] = b64(bytes(data))

    with_("rotation-new-key-edited", new_key_edited)
    with_("rotation-as-block", lambda b: b["blocks"].append(b["rotations"][0]))
    return out


def test_both_verifiers_agree_across_key_rotations(tmp_path: Path) -> None:
    case = json.loads((VECTORS / "anchorgate" / "rotation.json").read_text())
    pem = tmp_path / "original.pub"
    pem.write_text(case["public_key_pem"])
    key = PublicKey.load(pem)
    named = [(c["name"], c["bundle_json"]) for c in case["bundles"]]
    valid = json.loads(case["bundles"][0]["bundle_json"])
    disagreements = []
    for name, mutated in [*named, *rotation_mutations(valid)]:
        text = mutated if isinstance(mutated, str) else json.dumps(mutated)
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        report = verify_bundle(text.encode(), key)
        python = (report.valid, None if report.failure is None else report.failure.name)
        _, js = node("bundle", str(path), str(pem))
        if python != (js["valid"], js["check"]):
            disagreements.append((name, python, (js["valid"], js["check"])))
    assert not disagreements


def device_mutations(vectors: dict[str, Any]) -> list[tuple[str, str, bytes, str | None]]:
    """(name, topic, payload, the first step of FORMAT.md section 10 that must fail).

    All start from valid[0]; "valid" when no step may fail. Some are re-signed with the
    vector key (its seed is in the file), so that a later step is the first to fail;
    the random bit flips name no step (None: any verdict, as long as both verifiers
    give the same).
    """
    case = vectors["valid"][0]
    topic = case["topic"]
    wire = bytes.fromhex(case["signed_reading"])
    reading = bytes.fromhex(case["reading"])
    device = SigningKey.from_seed(bytes.fromhex(vectors["key"]["seed"]))
    other = SigningKey.from_seed(bytes(range(32)))
    signed = SignedReading.from_bytes(wire)

    def flip(data: bytes, position: int) -> bytes:
        out = bytearray(data)
        out[position] ^= 1
        return bytes(out)

    def packed(*fields: Any) -> bytes:
        data: bytes = msgpack.packb(list(fields), use_bin_type=True)
        return data

    out: list[tuple[str, str, bytes, str | None]] = [
        ("unchanged", topic, wire, "valid"),
        ("signature-bit", topic, flip(wire, len(wire) - 1), "signature"),
        ("reading-byte", topic, flip(wire, len(wire) - 70), "signature"),
        ("another-kind", "sensors/hs-0042/location", wire, "signature"),
        ("another-device-topic", "sensors/hs-0043/temperature", wire, "device-id"),
        (
            "signed-for-another-device-topic",
            "sensors/hs-0043/temperature",
            sign_reading(device, "sensors/hs-0043/temperature", "hs-0042", reading).to_bytes(),
            "device-id",
        ),
        (
            "signed-for-a-topic-outside-the-template",
            "other/hs-0042",
            sign_reading(device, "other/hs-0042", "hs-0042", reading).to_bytes(),
            "valid",
        ),
        (
            "signed-by-another-key",
            topic,
            sign_reading(other, topic, "hs-0042", reading).to_bytes(),
            "key-id",
        ),
        (
            "foreign-key-id",
            topic,
            packed(1, "hs-0042", hashlib.sha256(b"x").digest(), reading, signed.signature),
            "key-id",
        ),
        (
            "version-2",
            topic,
            packed(2, "hs-0042", signed.key_id, reading, signed.signature),
            "decode",
        ),
        ("uint8-version", topic, b"\x95\xcc\x01" + wire[2:], "decode"),
        ("trailing-byte", topic, wire + b"\x00", "decode"),
        ("truncated", topic, wire[:-1], "decode"),
        (
            "reading-starts-0x95",
            topic,
            packed(1, "hs-0042", signed.key_id, b"\x95" + reading, signed.signature),
            "decode",
        ),
        (
            "empty-device-id",
            topic,
            packed(1, "", signed.key_id, reading, signed.signature),
            "decode",
        ),
    ]
    rng = random.Random(10)
    for i in range(20):
        flipped = bytearray(wire)
        flipped[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
        out.append((f"flip-{i}", topic, bytes(flipped), None))
    return out


def python_device_verdict(topic: str, payload: bytes, key: PublicKey) -> str | None:
    """The Python verdict in the vector file's terms: ``format``, ``signature`` or None.

    ledger.device_sig decodes (step 1) and checks the key and the signature (steps 3
    and 4); step 2, the device the topic names, is its caller's, so the verdict on a
    well-formed reading is the gateway's auditor report's, which runs all of them.
    """
    try:
        signed = SignedReading.from_bytes(payload)
    except FormatError:
        return "format"
    envelope = Envelope(salt=bytes(16), topic=topic, received_ns=0, payload=payload)
    report = device_signature(envelope, {signed.device_id: key})
    assert report is not None
    return None if report["status"] == "verified" else "signature"


def test_both_verifiers_agree_on_device_reading_mutations(tmp_path: Path) -> None:
    vectors = json.loads((VECTORS / "anchorgate" / "device_signatures.json").read_text())
    pem = tmp_path / "device.pub"
    pem.write_text(vectors["key"]["public_key_pem"])
    key = PublicKey.load(pem)
    disagreements = []
    for name, topic, payload, step in device_mutations(vectors):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(payload)
        _, js = node("signed-reading", str(path), topic, str(pem))
        python = python_device_verdict(topic, payload, key)
        js_step = js["step"] or "valid"
        if python != js["error"] or (step is not None and step != js_step):
            disagreements.append((name, python, js))
    assert not disagreements
