"""ledger.merkle against the public RFC 6962 vectors of transparency-dev/merkle.

The vectors were transcribed as data into tests/vectors/rfc6962/; each file's
"source" names the repository paths and commits. Inclusion and consistency cases
include the repository's mutated ones, each with its own expected verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import ConsistencyError, ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    hash_children,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parent / "rfc6962"

# Cases the Go library accepts although a hash in them is not 32 bytes (it compares
# equal roots byte for byte without a length check). anchorgate refuses every hash
# that is not 32 bytes, so for these it is stricter on purpose.
STRICTER = {
    "additional/sizes-are-equal-and-proof-is-not-empty-where-both-sizes-are-one.json",
    "additional/sizes-are-equal-and-proof-is-not-empty-where-both-sizes-are-zero.json",
}


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def test_hasher_vectors() -> None:
    vectors = load("hasher.json")
    assert EMPTY_ROOT.hex() == vectors["empty_root"]
    for case in vectors["leaves"]:
        assert hash_leaf(bytes.fromhex(case["input"])).hex() == case["leaf_hash"]
    for case in vectors["nodes"]:
        node = hash_children(bytes.fromhex(case["left"]), bytes.fromhex(case["right"]))
        assert node.hex() == case["hash"]


def test_roots_of_the_eight_leaf_tree() -> None:
    vectors = load("roots.json")
    leaves = [bytes.fromhex(leaf) for leaf in vectors["leaves"]]
    for case in vectors["roots"]:
        assert MerkleTree.from_leaves(leaves[: case["size"]]).root.hex() == case["root"]


def test_proofs_of_the_eight_leaf_tree() -> None:
    vectors = load("roots.json")
    leaves = [bytes.fromhex(leaf) for leaf in vectors["leaves"]]
    roots = {case["size"]: bytes.fromhex(case["root"]) for case in vectors["roots"]}
    for case in vectors["inclusion"]:
        tree = MerkleTree.from_leaves(leaves[: case["tree_size"]])
        proof = [bytes.fromhex(p) for p in case["path"]]
        assert list(tree.inclusion_proof(case["leaf_index"])) == proof
        verify_inclusion(
            tree.leaf_hash(case["leaf_index"]),
            case["leaf_index"],
            case["tree_size"],
            proof,
            roots[case["tree_size"]],
        )
    for case in vectors["consistency"]:
        tree = MerkleTree.from_leaves(leaves[: case["size2"]])
        proof = [bytes.fromhex(p) for p in case["proof"]]
        assert list(tree.consistency_proof(case["size1"])) == proof
        verify_consistency(
            case["size1"], case["size2"], roots[case["size1"]], roots[case["size2"]], proof
        )


def cases(name: str) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in load(name)["cases"]]


@pytest.mark.parametrize("case", cases("inclusion.json"))
def test_inclusion_cases(case: dict[str, Any]) -> None:
    assert load("inclusion.json")["index_base"] == 0
    args = (
        bytes.fromhex(case["leaf_hash"]),
        case["leaf_index"],
        case["tree_size"],
        [bytes.fromhex(p) for p in case["proof"]],
        bytes.fromhex(case["root"]),
    )
    if case["want_error"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("case", cases("consistency.json"))
def test_consistency_cases(case: dict[str, Any]) -> None:
    args = (
        case["size1"],
        case["size2"],
        bytes.fromhex(case["root1"]),
        bytes.fromhex(case["root2"]),
        [bytes.fromhex(p) for p in case["proof"]],
    )
    if case["want_error"] or case["name"] in STRICTER:
        with pytest.raises(ConsistencyError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
