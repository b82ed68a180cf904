"""Key rotation in the ledger: rotation headers, the chain verifier and proof bundles.

A rotation block (header version 2) is signed by the old key and names the new one;
a verifier that trusts only the original key follows the chain across rotations, and
bundles of readings signed later carry the rotations (``anchorgate-proof/2``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    BlockLog,
    ChainBuilder,
    ChainError,
    ChainHead,
    ChainVerifier,
    Disclosure,
    Envelope,
    FormatError,
    SealedBlock,
    SignedHeader,
    SigningKey,
    build_bundle,
    hash_leaf,
    verify_bundle,
    verify_chain,
)
from ledger.bundle import ROTATION_BUNDLE_FORMAT
from ledger.header import BlockHeader
from ledger.merkle import EMPTY_ROOT

GATEWAY = "gw-rot"
KEYS = [SigningKey.from_seed(bytes([i + 1]) * 32) for i in range(5)]
STRANGER = SigningKey.from_seed(b"\x77" * 32)


def envelope(height: int, index: int) -> bytes:
    return Envelope.create(f"t/{height}", b"{}", 1000 + height, bytes([index]) * 16).to_bytes()


def build(plan: Sequence[str]) -> tuple[list[SealedBlock], list[list[bytes]]]:
    """Blocks from a plan: "b" a batch of two readings, "r" a rotation to the next key."""
    builder = ChainBuilder(GATEWAY, KEYS[0])
    blocks: list[SealedBlock] = []
    leaves: list[list[bytes]] = []
    next_key = 1
    for step in plan:
        height = builder.head.height
        if step == "r":
            blocks.append(builder.rotate(KEYS[next_key], 2000 + height))
            leaves.append([])
            next_key += 1
        else:
            data = [envelope(height, 0), envelope(height, 1)]
            blocks.append(
                builder.seal([hash_leaf(d) for d in data], 1000 + height, 1000 + height, 2000)
            )
            leaves.append(data)
    return blocks, leaves


def pairs(blocks: Sequence[SealedBlock]) -> list[tuple[bytes, bytes]]:
    return [(b.header_bytes, b.signature) for b in blocks]


def signed(block: SealedBlock) -> SignedHeader:
    return SignedHeader(block.header_bytes, block.signature)


def bundle_for(
    blocks: Sequence[SealedBlock], leaves: Sequence[Sequence[bytes]], reading: int, head: int
) -> dict[str, Any]:
    """A bundle of leaf 0 of block ``reading`` under the head ``head``."""
    log = BlockLog(b.block_hash for b in blocks[:head])
    rotations = [signed(b) for b in blocks[:head] if b.header.is_rotation]
    disclosure = Disclosure(
        leaves[reading][0], signed(blocks[reading]), 0, blocks[reading].tree.inclusion_proof(0)
    )
    heights = {b.header.height for b in rotations} | ({reading} - {head})
    proofs = {h: log.inclusion_proof(h) for h in heights}
    return build_bundle(signed(blocks[head]), [disclosure], proofs, rotations=rotations)


def failure(bundle: dict[str, Any], key: SigningKey = KEYS[0]) -> str | None:
    report = verify_bundle(json.dumps(bundle).encode(), key.public_key)
    return None if report.valid else report.failure.name  # type: ignore[union-attr]


def test_rotation_header_round_trips_and_keeps_its_rules() -> None:
    blocks, _ = build("brb")
    header = blocks[1].header
    assert header.version == 2
    assert header.is_rotation
    assert header.leaf_count == 0
    assert header.batch_root == EMPTY_ROOT
    assert header.new_key == KEYS[1].public_key.raw
    assert BlockHeader.from_bytes(blocks[1].header_bytes) == header
    assert blocks[1].header_bytes[:2] == b"\x9c\x02"  # 12 elements, version 2
    assert blocks[2].header.key_id == KEYS[1].key_id
    assert blocks[2].header.version == 1
    with pytest.raises(FormatError, match="new_key is the key that signs it"):
        dataclasses.replace(header, new_key=KEYS[0].public_key.raw)
    with pytest.raises(FormatError, match="leaf_count"):
        dataclasses.replace(header, leaf_count=1)
    with pytest.raises(FormatError, match="empty-tree"):
        dataclasses.replace(header, batch_root=bytes(32))
    with pytest.raises(FormatError, match="must be equal"):
        dataclasses.replace(header, first_received_ns=header.created_ns - 1)
    with pytest.raises(FormatError, match="leaf_count"):
        dataclasses.replace(blocks[0].header, leaf_count=0)  # only rotations are empty
    eleven = bytes([0x9B]) + blocks[1].header_bytes[1:]  # version 2 with 11 elements
    with pytest.raises(FormatError):
        BlockHeader.from_bytes(eleven)
    with pytest.raises(FormatError, match="unknown format version 3"):
        BlockHeader.from_bytes(b"\x9c\x03" + blocks[1].header_bytes[2:])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("bbr"), min_size=1, max_size=14))
def test_chains_with_up_to_three_rotations_verify_under_the_original_key(plan: list[str]) -> None:
    rotations = plan.count("r")
    if rotations > 3:
        plan = [s for s in plan if s == "b"] + ["r"] * 3
        rotations = 3
    blocks, _ = build(plan)
    verifier = ChainVerifier({KEYS[0].key_id: KEYS[0].public_key}, GATEWAY)
    for block in blocks:
        verifier.feed(block.header_bytes, block.signature)
    assert verifier.head == blocks[-1].head_after
    assert [h for h, _ in verifier.rotations] == [
        b.header.height for b in blocks if b.header.is_rotation
    ]
    assert set(verifier.keys) == {KEYS[rotations].key_id}
    assert verifier.revoked == {k.key_id for k in KEYS[:rotations]}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from("bbr"), min_size=1, max_size=10).map(lambda p: [*p, "b"]),
    st.data(),
)
def test_bundles_across_rotations_verify_under_the_original_key_only(
    plan: list[str], data: st.DataObject
) -> None:
    if plan.count("r") > 3:
        plan = [s for s in plan if s == "b"] + ["r"] * 3 + ["b"]
    blocks, leaves = build(plan)
    readable = [i for i, b in enumerate(blocks) if not b.header.is_rotation]
    head = data.draw(st.sampled_from(readable), label="head")
    reading = data.draw(st.sampled_from([i for i in readable if i <= head]), label="reading")
    bundle = bundle_for(blocks, leaves, reading, head)
    assert failure(bundle) is None
    rotated = any(b.header.is_rotation for b in blocks[:head])
    assert bundle["format"] == ("anchorgate-proof/2" if rotated else "anchorgate-proof/1")
    if rotated:
        later = blocks[head].header.key_id
        assert failure(bundle, next(k for k in KEYS if k.key_id == later)) == "key"


def test_a_block_signed_by_the_old_key_after_the_rotation_is_revoked() -> None:
    blocks, _ = build("bbr")
    stale = ChainBuilder(GATEWAY, KEYS[0], blocks[-1].head_after)
    forged = stale.seal([hash_leaf(b"x")], 5000, 5000, 5000)
    with pytest.raises(ChainError) as caught:
        verify_chain(pairs([*blocks, forged]), {KEYS[0].key_id: KEYS[0].public_key})
    assert caught.value.reason == "revoked-key"
    assert caught.value.height == 3


def test_a_key_no_rotation_introduced_is_unknown() -> None:
    blocks, _ = build("brb")
    stranger = ChainBuilder(GATEWAY, STRANGER, blocks[-1].head_after)
    forged = stranger.seal([hash_leaf(b"x")], 5000, 5000, 5000)
    with pytest.raises(ChainError) as caught:
        verify_chain(pairs([*blocks, forged]), {KEYS[0].key_id: KEYS[0].public_key})
    assert caught.value.reason == "unknown-key"
    # Without the rotation block, the new key's blocks are unknown too.
    with pytest.raises(ChainError) as caught:
        ChainVerifier({KEYS[0].key_id: KEYS[0].public_key}, GATEWAY).feed(
            blocks[2].header_bytes, blocks[2].signature
        )
    assert caught.value.reason == "unknown-key"


def test_a_tampered_rotation_record_fails() -> None:
    blocks, _ = build("brb")
    header = dataclasses.replace(blocks[1].header, new_key=STRANGER.public_key.raw)
    tampered = [pairs(blocks)[0], (header.to_bytes(), blocks[1].signature)]
    with pytest.raises(ChainError) as caught:
        verify_chain(tampered, {KEYS[0].key_id: KEYS[0].public_key})
    assert caught.value.reason == "signature"


def test_a_rotation_back_to_a_revoked_key_is_refused() -> None:
    builder = ChainBuilder(GATEWAY, KEYS[0])
    blocks = [builder.rotate(KEYS[1], 1), builder.rotate(KEYS[0], 2)]
    with pytest.raises(ChainError) as caught:
        verify_chain(pairs(blocks), {KEYS[0].key_id: KEYS[0].public_key})
    assert caught.value.reason == "rotation"
    assert caught.value.height == 1


def test_resuming_mid_chain_needs_the_keys_as_they_stood() -> None:
    blocks, _ = build("brbb")
    start = blocks[1].head_after
    verifier = ChainVerifier(
        {KEYS[1].key_id: KEYS[1].public_key}, GATEWAY, start, revoked=[KEYS[0].key_id]
    )
    for block in blocks[2:]:
        verifier.feed(block.header_bytes, block.signature)
    assert verifier.head == blocks[-1].head_after
    assert ChainHead.from_bytes(start.to_bytes()) == start


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_bundle_rotation_failures_are_named() -> None:
    blocks, leaves = build("bbrbrb")
    bundle = bundle_for(blocks, leaves, 0, 5)
    assert bundle["format"] == ROTATION_BUNDLE_FORMAT
    assert [r["height"] for r in bundle["rotations"]] == [2, 4]
    assert bundle["key_id"] == KEYS[0].key_id.hex()
    report = verify_bundle(json.dumps(bundle), KEYS[0].public_key)
    assert report.valid
    assert [r.height for r in report.rotations] == [2, 4]

    def mutated(change: Any) -> str | None:
        copy = json.loads(json.dumps(bundle))
        change(copy)
        return failure(copy)

    # Without the rotations the head's key is unknown; with only the first, too.
    assert mutated(lambda b: b.update(rotations=[])) == "unknown-key"
    assert mutated(lambda b: b["rotations"].pop()) == "unknown-key"
    # Rotations out of order, repeated, or an ordinary block posing as one.
    assert mutated(lambda b: b["rotations"].reverse()) == "unknown-key"
    assert mutated(lambda b: b["rotations"].append(b["rotations"][-1])) == "rotation"
    assert mutated(lambda b: b.update(rotations=[b["blocks"][0], *b["rotations"]])) == "rotation"
    # /2 requires the member; /1 does not know rotations (a v2 header is a format error).
    assert mutated(lambda b: b.pop("rotations")) == "format"
    assert mutated(lambda b: b.update(format="anchorgate-proof/1")) == "key"
    assert mutated(lambda b: b.update(format="anchorgate-proof/3")) == "version"

    def tamper_rotation(b: dict[str, Any]) -> None:
        header = dataclasses.replace(blocks[2].header, new_key=STRANGER.public_key.raw)
        b["rotations"][0]["header"] = b64(header.to_bytes())

    assert mutated(tamper_rotation) == "signature"

    def wrong_log_proof(b: dict[str, Any]) -> None:
        b["rotations"][1]["log_proof"][0] = b64(bytes(32))

    assert mutated(wrong_log_proof) == "block-in-chain"
    assert mutated(lambda b: b["rotations"][0].update(log_size=4)) == "size-mismatch"


def test_a_bundle_head_signed_by_a_revoked_key_fails_as_revoked() -> None:
    blocks, leaves = build("bbrb")
    stale = ChainBuilder(GATEWAY, KEYS[0], blocks[3].head_after)
    data = [envelope(4, 0)]
    forged = stale.seal([hash_leaf(d) for d in data], 1004, 1004, 3000)
    bundle = bundle_for([*blocks, forged], [*leaves, data], 4, 4)
    assert failure(bundle) == "revoked-key"
    stranger = ChainBuilder(GATEWAY, STRANGER, blocks[3].head_after)
    forged = stranger.seal([hash_leaf(d) for d in data], 1004, 1004, 3000)
    bundle = bundle_for([*blocks, forged], [*leaves, data], 4, 4)
    assert failure(bundle) == "unknown-key"


def test_a_bundle_whose_head_is_the_rotation_block() -> None:
    blocks, leaves = build("bbr")
    bundle = bundle_for(blocks, leaves, 1, 2)
    assert bundle["format"] == ROTATION_BUNDLE_FORMAT
    assert bundle["rotations"] == []
    assert failure(bundle) is None
    # A rotation header below the head must be listed in rotations.
    blocks, leaves = build("brb")
    bundle = bundle_for(blocks, leaves, 2, 2)
    log = BlockLog(b.block_hash for b in blocks[:2])
    bundle["blocks"] = [
        {
            "height": 1,
            "header": b64(blocks[1].header_bytes),
            "signature": b64(blocks[1].signature),
            "log_size": 2,
            "log_proof": [b64(p) for p in log.inclusion_proof(1)],
        }
    ]
    assert failure(bundle) is None  # listed: fine
