"""ledger.merkle: properties of RFC 9162 trees and proofs (public vectors: test_rfc6962_vectors)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ConsistencyError, FormatError, ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    hash_children,
    hash_leaf,
    inclusion_path_length,
    verify_consistency,
    verify_inclusion,
)


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 section 2.1.1 writes it, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hash_leaf(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hash_children(reference_root(leaves[:k]), reference_root(leaves[k:]))


def leaves_for(size: int, seed: int) -> list[bytes]:
    return [hashlib.sha256(f"{seed}:{i}".encode()).digest()[: 1 + i % 40] for i in range(size)]


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("size", range(0, 70))
def test_levels_root_matches_recursive_definition(size: int) -> None:
    leaves = leaves_for(size, 1)
    tree = MerkleTree.from_leaves(leaves)
    assert tree.root == reference_root(leaves)
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(hash_leaf(leaf))
    assert frontier.root() == tree.root


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert MerkleTree([]).root == EMPTY_ROOT == hashlib.sha256(b"").digest()


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 3000),
    seed=st.integers(0, 2**32),
    pick=st.integers(0, 2**32),
    target=st.sampled_from(["leaf", "proof", "root", "index", "size"]),
    bit=st.integers(0, 2**16),
)
def test_every_inclusion_proof_verifies_and_any_flip_fails(
    size: int, seed: int, pick: int, target: str, bit: int
) -> None:
    tree = MerkleTree.from_leaves(leaves_for(size, seed))
    index = pick % size
    leaf: bytes = tree.leaf_hash(index)
    proof = list(tree.inclusion_proof(index))
    root: bytes = tree.root
    verify_inclusion(leaf, index, size, proof, root)

    bad_size = size
    if target == "leaf":
        leaf = flip(leaf, bit)
    elif target == "proof":
        if not proof:  # a one-leaf tree has an empty path: add a trailing hash instead
            proof.append(bytes(32))
        else:
            i = bit % len(proof)
            proof[i] = flip(proof[i], bit // len(proof))
    elif target == "root":
        root = flip(root, bit)
    elif target == "index":
        index ^= 1 << (bit % max(1, size.bit_length()))
    else:
        bad_size ^= 1 << (bit % (size.bit_length() + 1))
    if target == "size" and directions(index, bad_size) == directions(index, size):
        # RFC 9162's known ambiguity: when the other size walks the same path the
        # proof verifies, which is why a verifier must take the size from the signed
        # header (the bundle tests show a size that disagrees with it fails).
        verify_inclusion(leaf, index, bad_size, proof, root)
        return
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, bad_size, proof, root)


def directions(index: int, size: int) -> list[bool] | None:
    """Which side each path hash joins on (True: left), or None if index is outside."""
    if not 0 <= index < size:
        return None
    sides, last = [], size - 1
    while last > 0:
        if index & 1:
            sides.append(True)
        elif index + 1 <= last:
            sides.append(False)
        index >>= 1
        last >>= 1
    return sides


@pytest.mark.parametrize(
    ("size", "index", "extra"),
    [
        pytest.param(8, 3, 1, id="trailing-hash"),
        pytest.param(8, 3, -1, id="missing-hash"),
        pytest.param(5, 4, 1, id="trailing-hash-on-promoted-leaf"),
        pytest.param(1, 0, 1, id="hash-for-single-leaf"),
    ],
)
def test_wrong_proof_length_fails(size: int, index: int, extra: int) -> None:
    tree = MerkleTree.from_leaves(leaves_for(size, 7))
    proof = list(tree.inclusion_proof(index))
    proof = proof + [bytes(32)] * extra if extra > 0 else proof[:extra]
    with pytest.raises(ProofError, match="must have"):
        verify_inclusion(tree.leaf_hash(index), index, size, proof, tree.root)


def test_path_does_not_bind_size_so_size_comes_from_the_caller() -> None:
    # Leaf 0's proof in a 4-leaf tree also "verifies" under a claimed size of 3: the
    # path alone does not bind the size. That is why every caller in anchorgate takes
    # the size from a signed header (see test_bundle: a size that disagrees fails).
    four = MerkleTree.from_leaves(leaves_for(4, 3))
    proof = four.inclusion_proof(0)
    verify_inclusion(four.leaf_hash(0), 0, 4, proof, four.root)
    verify_inclusion(four.leaf_hash(0), 0, 3, proof, four.root)
    # Leaf 3 has no such twin: under size 3 its index is outside the tree.
    with pytest.raises(ProofError):
        verify_inclusion(four.leaf_hash(3), 3, 3, four.inclusion_proof(3), four.root)


def test_interior_node_presented_as_leaf_fails() -> None:
    # Second preimage: the concatenated children of an interior node, offered as leaf
    # data, hash with the 0x00 prefix and so do not collide with the node.
    leaves = leaves_for(4, 9)
    tree = MerkleTree.from_leaves(leaves)
    left, right = tree.levels[0][0], tree.levels[0][1]
    fake_leaf = hash_leaf(left + right)
    assert fake_leaf != tree.levels[1][0]
    with pytest.raises(ProofError):
        verify_inclusion(fake_leaf, 0, 2, [tree.levels[1][1]], tree.root)
    # Under the true size the fake leaf fails wherever it is placed.
    for index in range(4):
        with pytest.raises(ProofError):
            verify_inclusion(fake_leaf, index, 4, tree.inclusion_proof(index), tree.root)


def test_duplicated_last_leaf_changes_the_root() -> None:
    # CVE-2012-2459: Bitcoin's tree duplicates an odd last node, so [a, b, c] and
    # [a, b, c, c] share a root. RFC 9162 promotes it instead.
    a, b, c = b"a", b"b", b"c"
    assert MerkleTree.from_leaves([a, b, c]).root != MerkleTree.from_leaves([a, b, c, c]).root
    assert MerkleTree.from_leaves([a, b, c]).root == hash_children(
        hash_children(hash_leaf(a), hash_leaf(b)), hash_leaf(c)
    )


def test_all_consistency_proofs_up_to_64_verify_and_mutations_fail() -> None:
    leaves = leaves_for(64, 5)
    roots = [reference_root(leaves[:n]) for n in range(65)]
    for n in range(1, 65):
        tree = MerkleTree.from_leaves(leaves[:n])
        for m in range(1, n + 1):
            proof = list(tree.consistency_proof(m))
            verify_consistency(m, n, roots[m], roots[n], proof)
            for i in range(len(proof)):
                bad = proof.copy()
                bad[i] = flip(bad[i], m * 7 + n)
                with pytest.raises(ConsistencyError):
                    verify_consistency(m, n, roots[m], roots[n], bad)
            with pytest.raises(ConsistencyError):
                verify_consistency(m, n, flip(roots[m], n), roots[n], proof)
            with pytest.raises(ConsistencyError):
                verify_consistency(m, n, roots[m], flip(roots[n], m), proof)
            with pytest.raises(ConsistencyError):
                verify_consistency(m, n, roots[m], roots[n], [*proof, roots[0]])
            if proof:
                with pytest.raises(ConsistencyError):
                    verify_consistency(m, n, roots[m], roots[n], proof[:-1])
            if m < n:  # the same proof under another size must not pass
                with pytest.raises(ConsistencyError):
                    verify_consistency(m, n - 1, roots[m], roots[n - 1], proof)


def test_inclusion_path_length_matches_drawn_paths() -> None:
    for size in range(1, 100):
        tree = MerkleTree.from_leaves(leaves_for(size, 2))
        for index in range(size):
            assert inclusion_path_length(index, size) == len(tree.inclusion_proof(index))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(FormatError):
        MerkleTree([b"short"])
    with pytest.raises(ValueError, match="outside"):
        MerkleTree.from_leaves([b"x"]).inclusion_proof(1)
    with pytest.raises(ProofError, match="outside"):
        verify_inclusion(bytes(32), 5, 5, [], bytes(32))
    with pytest.raises(ProofError, match="32 bytes"):
        verify_inclusion(bytes(31), 0, 1, [], bytes(32))
    with pytest.raises(ConsistencyError, match="do not grow"):
        verify_consistency(5, 4, bytes(32), bytes(32), [])
    with pytest.raises(FormatError):
        Frontier(3, [bytes(32)])


@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(1, 600),
    seed=st.integers(0, 2**16),
    picks=st.lists(st.integers(0, 10**6), max_size=6),
)
def test_streamed_subtree_roots_give_the_same_proofs(
    size: int, seed: int, picks: list[int]
) -> None:
    from ledger.merkle import consistency_ranges, inclusion_ranges, subtree_roots

    tree = MerkleTree.from_leaves(leaves_for(size, seed))
    indices = sorted({p % size for p in picks})
    olds = sorted({1 + p % size for p in picks})
    wanted = [r for i in indices for r in inclusion_ranges(i, size)]
    wanted += [r for m in olds for r in consistency_ranges(m, size)]
    roots = subtree_roots(iter(tree.levels[0]), size, wanted)
    for index in indices:
        proof = tuple(roots[r] for r in inclusion_ranges(index, size))
        assert proof == tree.inclusion_proof(index)
    for old in olds:
        proof = tuple(roots[r] for r in consistency_ranges(old, size))
        assert proof == tree.consistency_proof(old)


def test_subtree_roots_refuses_short_input_and_odd_ranges() -> None:
    from ledger.merkle import subtree_roots

    hashes = [hash_leaf(bytes([i])) for i in range(6)]
    with pytest.raises(ValueError, match="expected 7"):
        subtree_roots(hashes, 7, [])
    with pytest.raises(ValueError, match="neither a full block"):
        subtree_roots(hashes, 6, [(1, 3)])
    assert subtree_roots(hashes, 6, [(4, 6)])[(4, 6)] == hash_children(hashes[4], hashes[5])
