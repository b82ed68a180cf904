"""Merkle trees per RFC 9162 section 2.1 (identical to RFC 6962 section 2.1).

Leaf hash ``SHA-256(0x00 || data)``, interior node ``SHA-256(0x01 || left || right)``,
the empty tree hashes to ``SHA-256("")``. A tree of n leaves splits at the largest
power of two smaller than n; built level by level that is the same as promoting an
odd last node unchanged to the next level (never duplicating it, which is what made
Bitcoin's CVE-2012-2459 possible).

:class:`MerkleTree` builds all levels in one pass and draws inclusion and
consistency proofs from them. The verifiers are plain functions whose tree sizes
come from the caller: a path alone does not bind the size of the tree (a leaf in the
left subtree has the same path under sizes 3 and 4), so callers pass the size from
what is signed, never from the proof's own claim. :class:`Frontier` is the compact
O(log n) state that appends leaves and yields the root, used for the block log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import NewType

from ledger.errors import ConsistencyError, FormatError, ProofError

LeafHash = NewType("LeafHash", bytes)
Root = NewType("Root", bytes)

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = Root(hashlib.sha256(b"").digest())

_sha256 = hashlib.sha256
# A hash object that has already taken the node prefix: copying it is cheaper than
# making a new one (hashlib looks the algorithm up by name on each construction).
_NODE_STATE = hashlib.sha256(NODE_PREFIX)


def hash_leaf(data: bytes) -> LeafHash:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return LeafHash(_sha256(LEAF_PREFIX + data).digest())


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    # The hot loop of tree building: one hash per pair, from a copy of the prefixed
    # state (about 10% less than hashing prefix + a + b afresh); an odd last node is
    # promoted as it is.
    new = _NODE_STATE.copy
    nxt: list[bytes] = []
    append = nxt.append
    it = iter(level)  # zip(it, it) pairs neighbours without copying the level
    for a, b in zip(it, it, strict=False):
        node = new()
        node.update(a)
        node.update(b)
        append(node.digest())
    if len(level) % 2:
        nxt.append(level[-1])
    return nxt


def _build_levels(level: list[bytes]) -> list[list[bytes]]:
    levels = [level]
    while len(level) > 1:
        level = _next_level(level)
        levels.append(level)
    return levels


class MerkleTree:
    """All levels of the RFC 9162 tree over ``leaf_hashes``, built once.

    ``levels[0]`` are the leaf hashes, ``levels[-1]`` is ``[root]``. Node ``j`` of
    level ``k`` covers leaves ``[j * 2**k, min((j + 1) * 2**k, size))``.
    """

    __slots__ = ("levels",)

    def __init__(self, leaf_hashes: Iterable[bytes]) -> None:
        level = list(leaf_hashes)
        sizes = set(map(len, level))  # map(len) runs in C: cheap even for 2^20 leaves
        if sizes - {HASH_SIZE}:
            raise FormatError(f"leaf hashes must be {HASH_SIZE} bytes, not {sorted(sizes)}")
        self.levels: list[list[bytes]] = _build_levels(level)

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MerkleTree:
        """The tree over raw leaf data (hashed with the 0x00 prefix first)."""
        sha, prefix = _sha256, LEAF_PREFIX
        tree = cls.__new__(cls)
        # The hashes are ours and fresh: no copy, no length check.
        tree.levels = _build_levels([sha(prefix + leaf).digest() for leaf in leaves])
        return tree

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> Root:
        if not self.levels[0]:
            return EMPTY_ROOT
        return Root(self.levels[-1][0])

    def leaf_hash(self, index: int) -> LeafHash:
        return LeafHash(self.levels[0][index])

    def inclusion_proof(self, index: int) -> tuple[bytes, ...]:
        """The RFC 9162 audit path of leaf ``index``, leaf level first."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} is outside a tree of size {self.size}")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return tuple(path)

    def _subtree(self, start: int, end: int) -> bytes:
        # MTH(D[start:end]) for the ranges RFC 9162's SUBPROOF asks for: start is
        # aligned to the subtree's height k, and the range is either a full 2**k block
        # or runs to the end of the tree, so it is exactly node start >> k of level k.
        k = (end - start - 1).bit_length()
        return self.levels[k][start >> k]

    def consistency_proof(self, old_size: int) -> tuple[bytes, ...]:
        """RFC 9162 section 2.1.4.1 proof that this tree extends its first old_size leaves."""
        return tuple(self._subtree(s, e) for s, e in consistency_ranges(old_size, self.size))


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (RFC 9162's k), for size > 1."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree roots form the audit path of ``index``, leaf end first.

    Each range is ``(start, end)``: either a full aligned block of 2**k leaves or one
    that runs to the end of the tree (RFC 9162 section 2.1.3.1's PATH recursion).
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree roots form the RFC 9162 consistency proof."""
    if not 0 < old_size <= size:
        raise ValueError(f"old size {old_size} is outside 1..{size}")
    ranges = []
    start, end, m, complete = 0, size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def subtree_roots(
    leaf_hashes: Iterable[bytes], size: int, ranges: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Roots of the given leaf ranges, in one pass over the first ``size`` leaf hashes.

    For proofs over a log too large to hold in memory: memory is O(log size) plus the
    answers. Ranges must be of the kinds :func:`inclusion_ranges` and
    :func:`consistency_ranges` return.
    """
    wanted = set(ranges)
    found: dict[tuple[int, int], bytes] = {}
    stack: list[tuple[int, int, bytes]] = []  # (start, level, hash): the frontier
    count = 0
    for leaf in leaf_hashes:
        if count == size:
            break
        start, level, node = count, 0, leaf
        if (start, start + 1) in wanted:
            found[(start, start + 1)] = node
        # Merge equal-sized subtrees; each merge completes an aligned block.
        while stack and stack[-1][1] == level:
            start, _, left = stack.pop()
            node = hash_children(left, node)
            level += 1
            if (start, start + (1 << level)) in wanted:
                found[(start, start + (1 << level))] = node
        stack.append((start, level, node))
        count += 1
    if count != size:
        raise ValueError(f"expected {size} leaf hashes, got {count}")
    for start, end in wanted - found.keys():
        if end != size:
            raise ValueError(f"range {start}..{end} is neither a full block nor a tree end")
        # A range that runs to the end: fold the frontier nodes it covers, right first.
        covered = [node for s, _, node in stack if s >= start]
        if not covered or stack[-len(covered)][0] != start:
            raise ValueError(f"range {start}..{end} does not start on a subtree boundary")
        acc = covered[-1]
        for node in reversed(covered[:-1]):
            acc = hash_children(node, acc)
        found[(start, end)] = acc
    return found


def _check_hashes(name: str, hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError(f"{name}: every hash must be {HASH_SIZE} bytes, one is {len(h)}")


def inclusion_path_length(index: int, size: int) -> int:
    """How many hashes the audit path of ``index`` in a tree of ``size`` has."""
    length, last = 0, size - 1
    while last > 0:
        if index | 1 <= last:  # the node has a sibling at this level
            length += 1
        index >>= 1
        last >>= 1
    return length


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> Root:
    """The root that ``proof`` implies for ``leaf_hash`` at ``index`` (RFC 9162 2.1.3.2).

    Raises :class:`ProofError` if the index is outside the tree or the proof has the
    wrong number of hashes for ``(index, size)``.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes("inclusion proof", [leaf_hash, *proof])
    expected = inclusion_path_length(index, size)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} must have {expected} hashes, "
            f"it has {len(proof)}"
        )
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            # Climb past the levels where this node was promoted without a sibling.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    return Root(r)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    ``size`` and ``root`` must come from something signed. Raises :class:`ProofError`.
    """
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} of {size} does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends (old_size, old_root).

    RFC 9162 section 2.1.4.2. Sizes and roots must come from signed heads.
    Raises :class:`ConsistencyError`.
    """
    if old_size < 0 or new_size < old_size:
        raise ConsistencyError(f"sizes {old_size} -> {new_size} do not grow")
    try:
        _check_hashes("consistency proof", [old_root, new_root, *proof])
    except ProofError as exc:
        raise ConsistencyError(str(exc)) from None
    if old_size == new_size:
        if proof:
            raise ConsistencyError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ConsistencyError(f"two different roots for the same size {old_size}")
        return
    if old_size == 0:
        # Every tree extends the empty one, so such a "proof" shows nothing; like
        # transparency-dev/merkle, refuse it rather than pass it.
        raise ConsistencyError(f"a consistency proof from the empty tree to {new_size} is useless")
    expected = len(consistency_ranges(old_size, new_size))
    if len(proof) != expected:
        raise ConsistencyError(
            f"consistency proof {old_size} -> {new_size} must have {expected} hashes, "
            f"it has {len(proof)}"
        )
    hashes = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a full subtree
        hashes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise ConsistencyError("consistency proof has hashes past the root")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyError("consistency proof ends below the root")
    if fr != old_root:
        raise ConsistencyError(f"consistency proof does not lead to the old root ({old_size})")
    if sr != new_root:
        raise ConsistencyError(f"consistency proof does not lead to the new root ({new_size})")


class Frontier:
    """The compact state of an append-only RFC 9162 tree: O(log n) subtree roots.

    ``nodes`` holds the roots of the perfect subtrees that make up the tree, largest
    (leftmost) first, one for each set bit of ``size``.
    """

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(nodes) != size.bit_count():
            raise FormatError(f"a frontier of size {size} has {size.bit_count()} nodes")
        for node in nodes:
            if len(node) != HASH_SIZE:
                raise FormatError(f"frontier nodes must be {HASH_SIZE} bytes")
        self.size = size
        self.nodes = list(nodes)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf (already hashed with the 0x00 prefix)."""
        node = leaf_hash
        size = self.size
        # Merge equal-sized subtrees, as a binary counter carries.
        while size & 1:
            node = hash_children(self.nodes.pop(), node)
            size >>= 1
        self.nodes.append(node)
        self.size += 1

    def root(self) -> Root:
        """The RFC 9162 root of the tree so far."""
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            acc = hash_children(node, acc)
        return Root(acc)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.nodes)
