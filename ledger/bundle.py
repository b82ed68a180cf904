"""Proof bundles: the format (docs/FORMAT.md section 8) and building one.

A bundle is versioned JSON holding everything a verifier needs except the trusted
public key: the disclosed envelopes with their inclusion paths in their batch trees,
the header and signature of every block they sit in, each block's inclusion proof in
the head's block log, the head's header and signature, and optionally the proof that
the head extends an older head. Readings that were not asked for appear only as
sibling hashes, and the bundle grows with log(chain length), not with it.

A chain that changed its signing key (rotation blocks, header version 2) gives
bundles of format ``anchorgate-proof/2``: the same members plus ``rotations``, every
rotation block below the head with its proof in the head's block log, so that a
verifier holding only the original public key can follow the keys to the head.

Verification lives in :mod:`ledger.verify`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.header import BlockHash, BlockHeader, block_hash
from ledger.merkle import MerkleTree, hash_leaf

BUNDLE_FORMAT = "anchorgate-proof/1"
ROTATION_BUNDLE_FORMAT = "anchorgate-proof/2"
BUNDLE_FORMATS = (BUNDLE_FORMAT, ROTATION_BUNDLE_FORMAT)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A block header's bytes and the gateway's signature over them."""

    header_bytes: bytes
    signature: bytes

    @property
    def header(self) -> BlockHeader:
        return BlockHeader.from_bytes(self.header_bytes)

    @property
    def block_hash(self) -> BlockHash:
        return block_hash(self.header_bytes)


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One reading to disclose: its envelope, its block, its index and path in the batch."""

    envelope: bytes
    block: SignedHeader
    leaf_index: int
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class HeadExtension:
    """Proof that the bundle's head extends an older head the auditor already trusts.

    ``log_proof`` proves the old head's block at index ``old.height`` of the new head's
    block log; ``consistency`` is the RFC 9162 consistency proof from the old head's log
    (size ``old.height``) to the new head's (empty when the old height is 0).
    """

    old: SignedHeader
    log_proof: tuple[bytes, ...]
    consistency: tuple[bytes, ...]


class BlockLog:
    """The block log of a head: the tree over the hashes of blocks 0..height-1."""

    def __init__(self, block_hashes: Iterable[bytes]) -> None:
        self.tree = MerkleTree(hash_leaf(h) for h in block_hashes)

    def inclusion_proof(self, height: int) -> tuple[bytes, ...]:
        return self.tree.inclusion_proof(height)

    def extension(self, old: SignedHeader) -> HeadExtension:
        """Proof that this log's head extends ``old`` (a block of this chain)."""
        height = old.header.height
        consistency = self.tree.consistency_proof(height) if height else ()
        return HeadExtension(old, self.tree.inclusion_proof(height), consistency)


def build_bundle(
    head: SignedHeader,
    disclosures: Sequence[Disclosure],
    log_proofs: Mapping[int, Sequence[bytes]],
    extends: HeadExtension | None = None,
    rotations: Sequence[SignedHeader] = (),
) -> dict[str, Any]:
    """Assemble a bundle; ``log_proofs[h]`` proves block h in the head's block log.

    The head's log has size ``head.height``; a block at the head's own height needs
    no log proof. ``extends`` optionally proves that the head extends an older head.
    ``rotations`` are ALL the chain's rotation blocks below the head, in height order
    (``log_proofs`` must hold their proofs too); with any, or with a rotation header
    anywhere in the bundle, the format is ``anchorgate-proof/2`` and ``key_id`` names
    the original key (the signer of the first rotation).
    Returns the JSON-ready mapping (see :func:`dumps_bundle`).
    """
    head_header = head.header
    rotation_headers = [r.header for r in rotations]
    heights = [h.height for h in rotation_headers]
    if any(not h.is_rotation for h in rotation_headers) or heights != sorted(set(heights)):
        raise ValueError("rotations must be distinct rotation blocks in height order")
    if heights and heights[-1] >= head_header.height:
        raise ValueError(f"rotation block {heights[-1]} is not below the head")
    blocks: dict[int, SignedHeader] = {}
    readings = []
    for item in disclosures:
        h = item.block.header
        if h.height > head_header.height:
            raise ValueError(f"block {h.height} is above the head {head_header.height}")
        if h.height < head_header.height:
            blocks[h.height] = item.block
        readings.append(
            {
                "block_height": h.height,
                "leaf_index": item.leaf_index,
                "batch_size": h.leaf_count,
                "envelope": _b64(item.envelope),
                "path": [_b64(p) for p in item.path],
            }
        )
    rotated = bool(rotations) or any(
        block.header.is_rotation
        for block in [head, *blocks.values(), *([extends.old] if extends else [])]
    )
    original_key = rotation_headers[0].key_id if rotation_headers else head_header.key_id
    bundle: dict[str, Any] = {
        "format": ROTATION_BUNDLE_FORMAT if rotated else BUNDLE_FORMAT,
        "gateway_id": head_header.gateway_id,
        "key_id": original_key.hex(),
        "head": {
            "height": head_header.height,
            "header": _b64(head.header_bytes),
            "signature": _b64(head.signature),
        },
        "blocks": [
            {
                "height": height,
                "header": _b64(block.header_bytes),
                "signature": _b64(block.signature),
                "log_size": head_header.height,
                "log_proof": [_b64(p) for p in log_proofs[height]],
            }
            for height, block in sorted(blocks.items())
        ],
        "readings": readings,
    }
    if rotated:
        bundle["rotations"] = [
            {
                "height": rotation.header.height,
                "header": _b64(rotation.header_bytes),
                "signature": _b64(rotation.signature),
                "log_size": head_header.height,
                "log_proof": [_b64(p) for p in log_proofs[rotation.header.height]],
            }
            for rotation in rotations
        ]
    if extends is not None:
        bundle["extends"] = {
            "height": extends.old.header.height,
            "header": _b64(extends.old.header_bytes),
            "signature": _b64(extends.old.signature),
            "log_proof": [_b64(p) for p in extends.log_proof],
            "consistency": [_b64(p) for p in extends.consistency],
        }
    return bundle


def log_proofs(
    block_hashes: Sequence[bytes], heights: Iterable[int]
) -> dict[int, tuple[bytes, ...]]:
    """Inclusion proofs of blocks ``heights`` in the log over ``block_hashes``.

    ``block_hashes`` are the hashes of blocks 0..head.height-1, in order: the leaves of
    the head's block log. One pass builds the log tree; every proof comes from it.
    """
    wanted = sorted(set(heights))
    if not wanted:
        return {}
    log = BlockLog(block_hashes)
    return {height: log.inclusion_proof(height) for height in wanted}


def dumps_bundle(bundle: Mapping[str, Any]) -> bytes:
    """The bundle as UTF-8 JSON, one field per line for people who open it."""
    return json.dumps(bundle, indent=1).encode() + b"\n"
