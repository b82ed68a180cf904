"""ledger.header and ledger.chain: building, resuming and verifying a chain of blocks."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chain import ChainBuilder, ChainHead, ChainVerifier, SealedBlock, verify_chain
from ledger.errors import ChainError, FormatError
from ledger.header import ZERO_HASH, BlockHeader
from ledger.keys import SigningKey
from ledger.merkle import MerkleTree, hash_leaf

KEY = SigningKey.from_seed(bytes(32))
OTHER = SigningKey.from_seed(b"\x01" * 32)
KEYS = {KEY.key_id: KEY.public_key}


def make_chain(length: int, key: SigningKey = KEY) -> list[SealedBlock]:
    builder = ChainBuilder("gw-test", key)
    blocks = []
    for height in range(length):
        leaves = [hashlib.sha256(f"{height}/{i}".encode()).digest() for i in range(1 + height % 5)]
        blocks.append(builder.seal(leaves, 100 * height, 100 * height + 50, 100 * height + 60))
    return blocks


def pairs(blocks: list[SealedBlock]) -> list[tuple[bytes, bytes]]:
    return [(b.header_bytes, b.signature) for b in blocks]


def test_header_round_trip_and_hash() -> None:
    block = make_chain(3)[2]
    assert BlockHeader.from_bytes(block.header_bytes) == block.header
    assert block.header.block_hash() == hashlib.sha256(block.header_bytes).digest()


def test_genesis_links_and_log_roots() -> None:
    blocks = make_chain(6)
    assert blocks[0].header.prev_hash == ZERO_HASH
    for height, block in enumerate(blocks):
        assert block.header.height == height
        if height:
            assert block.header.prev_hash == blocks[height - 1].block_hash
        log = MerkleTree(hash_leaf(b.block_hash) for b in blocks[:height])
        assert block.header.log_root == log.root
    head = verify_chain(pairs(blocks), KEYS)
    assert head == blocks[-1].head_after
    assert head.height == 6


def test_head_round_trips_and_resumes() -> None:
    blocks = make_chain(5)
    head = ChainHead.from_bytes(blocks[2].head_after.to_bytes())
    assert head == blocks[2].head_after
    builder = ChainBuilder("gw-test", KEY, head)
    resumed = builder.seal([bytes(32)], 300, 350, 360)
    assert resumed.header.prev_hash == blocks[2].block_hash
    verifier = ChainVerifier(KEYS, start=head)
    verifier.feed(resumed.header_bytes, resumed.signature)


def test_created_time_never_goes_backwards() -> None:
    builder = ChainBuilder("gw-test", KEY)
    first = builder.seal([bytes(32)], 10, 20, 1000)
    second = builder.seal([bytes(32)], 30, 40, 500)  # the clock stepped back
    assert second.header.created_ns == first.header.created_ns == 1000
    verify_chain(pairs([first, second]), KEYS)


def test_header_checks_its_own_fields() -> None:
    header = make_chain(2)[1].header
    with pytest.raises(FormatError, match="prev_hash must be 32 zero bytes"):
        replace(header, prev_hash=ZERO_HASH)
    with pytest.raises(FormatError, match="times must satisfy"):
        replace(header, first_received_ns=header.last_received_ns + 1)
    with pytest.raises(FormatError, match="leaf_count"):
        replace(header, leaf_count=0)


def expect(blocks: list[tuple[bytes, bytes]], reason: str, height: int) -> None:
    with pytest.raises(ChainError) as info:
        verify_chain(blocks, KEYS)
    assert (info.value.reason, info.value.height) == (reason, height), str(info.value)


def resign(header: BlockHeader, key: SigningKey = KEY) -> tuple[bytes, bytes]:
    data = header.to_bytes()
    return data, key.sign(data)


@pytest.mark.parametrize(
    ("mutate", "reason", "height"),
    [
        pytest.param(lambda c: c[:2] + c[3:], "height-gap", 3, id="dropped-block"),
        pytest.param(lambda c: [*c[:3], c[2], *c[3:]], "duplicate-height", 2, id="duplicate"),
        pytest.param(lambda c: [c[0], c[2], c[1], *c[3:]], "height-gap", 2, id="reordered"),
        pytest.param(
            lambda c: [*c[:1], (c[1][0], c[2][1]), *c[2:]], "signature", 1, id="swapped-signature"
        ),
        pytest.param(
            lambda c: [*c[:1], (c[1][0][:-1] + b"\x00", c[1][1]), *c[2:]],
            "unknown-key",
            1,
            id="edited-key-id-byte",
        ),
        pytest.param(lambda c: [*c[:1], (b"\x93\x01", c[1][1])], "format", 1, id="garbage"),
        pytest.param(
            lambda c: [*c[:1], (c[1][0][:40] + b"\x00" + c[1][0][41:], c[1][1])],
            "signature",
            1,
            id="edited-prev-hash-byte",
        ),
    ],
)
def test_broken_chains_are_named(mutate: object, reason: str, height: int) -> None:
    chain = pairs(make_chain(5))
    expect(mutate(chain), reason, height)  # type: ignore[operator]


def test_resigned_edits_are_found_by_their_link() -> None:
    blocks = make_chain(4)
    chain = pairs(blocks)
    h2 = blocks[2].header
    bad_prev = resign(replace(h2, prev_hash=bytes(range(32))))
    expect([*chain[:2], bad_prev, chain[3]], "prev-hash", 2)
    bad_log = resign(replace(h2, log_root=bytes(32)))
    expect([*chain[:2], bad_log, chain[3]], "log-root", 2)
    early = resign(replace(h2, created_ns=0, first_received_ns=0, last_received_ns=0), KEY)
    expect([*chain[:2], early], "time-backwards", 2)
    other_gateway = resign(replace(h2, gateway_id="gw-other"))
    expect([*chain[:2], other_gateway], "gateway-id", 2)
    other_key = resign(replace(h2, key_id=OTHER.key_id), OTHER)
    expect([*chain[:2], other_key], "unknown-key", 2)
    # An inserted block, validly signed, at an existing height.
    inserted = resign(replace(h2, batch_root=bytes(32)))
    expect([*chain[:3], inserted, chain[3]], "duplicate-height", 2)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(2, 12),
    op=st.sampled_from(["edit", "drop", "insert", "reorder"]),
    at=st.integers(0, 100),
    byte=st.integers(0, 10_000),
)
def test_any_edit_drop_insert_or_reorder_is_found(length: int, op: str, at: int, byte: int) -> None:
    chain = pairs(make_chain(length))
    i = at % length
    if op == "edit":
        data = bytearray(chain[i][0])
        data[byte % len(data)] ^= 1 + byte % 255
        chain[i] = (bytes(data), chain[i][1])
    elif op == "drop":
        if i == length - 1:  # dropping the newest block is just an older chain
            i = length - 2
        del chain[i]
    elif op == "insert":
        chain.insert(i, chain[(i + byte) % length])
    else:
        j = (i + 1 + byte % (length - 1)) % length
        chain[i], chain[j] = chain[j], chain[i]
    with pytest.raises(ChainError):
        verify_chain(chain, KEYS)
