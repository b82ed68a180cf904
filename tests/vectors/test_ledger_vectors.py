"""The format test vectors in tests/vectors/anchorgate/: reproduced byte for byte, and decoded.

tests/vectors/make_ledger_vectors.py wrote them from fixed seeds and salts. The code must still
produce exactly those bytes (a format change shows up here first), and the stored
bytes must decode and verify without the generator (as an outside verifier would).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from make_ledger_vectors import build_all

from ledger import BlockHeader, ChainHead, Envelope, PublicKey, verify_bundle, verify_chain
from ledger.merkle import MerkleTree, hash_leaf, verify_inclusion

VECTORS = Path(__file__).resolve().parent / "anchorgate"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.mark.parametrize("name", ["envelopes.json", "chain.json", "bundle.json", "rotation.json"])
def test_code_reproduces_vectors_byte_for_byte(name: str) -> None:
    assert build_all()[name] == (VECTORS / name).read_text()


def test_envelope_vectors_decode() -> None:
    for case in load("envelopes.json")["cases"]:
        data = bytes.fromhex(case["envelope"])
        envelope = Envelope.from_bytes(data)
        assert envelope.salt.hex() == case["salt"]
        assert envelope.topic == case["topic"]
        assert envelope.received_ns == case["received_ns"]
        assert envelope.payload.hex() == case["payload"]
        assert hash_leaf(data).hex() == case["leaf_hash"]


def test_chain_vectors_decode_and_verify() -> None:
    chain = load("chain.json")
    key = PublicKey.from_pem(chain["key"]["public_key_pem"].encode())
    assert key.raw.hex() == chain["key"]["public_key"]
    assert key.key_id.hex() == chain["key"]["key_id"]
    pairs = []
    for block in chain["blocks"]:
        header_bytes = bytes.fromhex(block["header"])
        header = BlockHeader.from_bytes(header_bytes)
        for field in ("height", "leaf_count", "first_received_ns", "created_ns", "gateway_id"):
            assert getattr(header, field) == block[field]
        assert header.block_hash().hex() == block["block_hash"]
        leaves = [bytes.fromhex(h) for h in block["leaf_hashes"]]
        assert MerkleTree(leaves).root.hex() == block["batch_root"]
        for index, path in enumerate(block["inclusion_paths"]):
            proof = [bytes.fromhex(p) for p in path]
            verify_inclusion(leaves[index], index, len(leaves), proof, header.batch_root)
        pairs.append((header_bytes, bytes.fromhex(block["signature"])))
    head = verify_chain(pairs, {key.key_id: key})
    assert head == ChainHead.from_bytes(bytes.fromhex(chain["blocks"][-1]["head_after"]))


def test_bundle_vector_verifies() -> None:
    case = load("bundle.json")
    key = PublicKey.from_pem(case["public_key_pem"].encode())
    report = verify_bundle(case["bundle_json"], key, bytes.fromhex(case["head_hash"]))
    assert report.valid, report.failure
    older = verify_bundle(case["bundle_json"], key, bytes.fromhex(case["older_head_hash"]))
    assert older.valid, older.failure
    assert older.extends == bytes.fromhex(case["older_head_hash"])
    assert [(r.block.height, r.leaf_index) for r in report.readings] == [(0, 2), (2, 4), (3, 1)]


def test_rotation_vectors_verify_under_the_original_key_alone() -> None:
    case = load("rotation.json")
    key = PublicKey.from_pem(case["public_key_pem"].encode())
    assert key.key_id.hex() == case["keys"][0]["key_id"] == load("chain.json")["key"]["key_id"]
    pairs = [(bytes.fromhex(b["header"]), bytes.fromhex(b["signature"])) for b in case["blocks"]]
    head = verify_chain(pairs, {key.key_id: key})
    assert head == ChainHead.from_bytes(bytes.fromhex(case["blocks"][-1]["head_after"]))
    for block in case["blocks"]:
        header = BlockHeader.from_bytes(bytes.fromhex(block["header"]))
        assert header.version == block["version"]
        assert (header.new_key or b"").hex() == (block["new_key"] or "")
    verdicts = []
    for bundle in case["bundles"]:
        report = verify_bundle(bundle["bundle_json"], key)
        verdicts.append((bundle["name"], None if report.valid else report.failure.name))  # type: ignore[union-attr]
    assert verdicts == [(b["name"], b["expect"]) for b in case["bundles"]]
