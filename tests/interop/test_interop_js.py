"""Two verifiers, one spec: the Python ledger and tests/interop/verify.mjs must agree.

verify.mjs was written from docs/FORMAT.md alone, in JavaScript, by someone who did
not read ledger/. These tests run it (when Node.js is installed) on the format
vectors and on many mutated bundles, and compare its verdict and first failed check
with the Python verifier's: a disagreement is a bug in one of them or a gap in the
spec.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ledger import PublicKey, verify_bundle

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
