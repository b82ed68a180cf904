"""Export proof bundles from a store (docs/FORMAT.md section 8).

:func:`export_bundle` selects readings (by device, asset, receive-time range or
reading id), proves each in its block's batch tree, proves each block in the head's
block log, and assembles a bundle with the ledger. Readings that were not selected
are never read beyond their leaf hashes.

When the chain rotated its key (``anchorgate rotate-key``), the bundle also carries
every rotation block below the head with its log proof (``anchorgate-proof/2``), so
that it verifies under the gateway's original public key.

The block log is never held in memory: one streamed pass over the stored block
hashes yields every subtree root the proofs need (``ledger.merkle.subtree_roots``),
so memory stays O(log n) plus the bundle whatever the length of the chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.reader import Selection, StoreReader
from ledger import (
    Disclosure,
    FormatError,
    HeadExtension,
    MerkleTree,
    SignedHeader,
    block_hash,
    build_bundle,
    hash_leaf,
)
from ledger.merkle import consistency_ranges, inclusion_ranges, subtree_roots

MAX_EXPORT_READINGS = 100_000
# Leaf hashes per query when the audit paths are built (see _batch_paths).
PATH_QUERY_LEAVES = 1 << 16


class ExportError(GatewayError):
    """The export cannot be made as asked; the message says why."""


class NothingToExport(ExportError):
    """No anchored reading (or no block) matches what was asked for."""


@dataclass(frozen=True, slots=True)
class Exported:
    """A bundle and what it holds."""

    bundle: dict[str, Any]
    readings: int
    blocks: int
    head_height: int
    head_hash: bytes


def _signed(reader: StoreReader, height: int) -> SignedHeader:
    row = reader.block(height)
    if row is None:
        raise ExportError(f"store: block {height} is missing; run 'anchorgate audit'")
    header, signature, _ = row
    signed = SignedHeader(header, signature)
    try:
        actual = signed.header.height
    except FormatError as exc:
        raise ExportError(
            f"store: block {height} is unreadable ({exc}); run 'anchorgate audit'"
        ) from None
    if actual != height:
        raise ExportError(
            f"store: the row for block {height} holds block {actual}; run 'anchorgate audit'"
        )
    return signed


def _signed_blocks(reader: StoreReader, heights: list[int]) -> dict[int, SignedHeader]:
    """The signed headers at ``heights``, in one query."""
    found: dict[int, SignedHeader] = {}
    for height, header, signature in reader.all(
        "SELECT height, header, signature FROM blocks "
        "WHERE height IN (SELECT unnest(?::BIGINT[])) ORDER BY height",
        [heights],
    ):
        if height in found:
            raise ExportError(f"store: two blocks at height {height}; run 'anchorgate audit'")
        found[int(height)] = SignedHeader(bytes(header), bytes(signature))
    for height in heights:
        if height not in found:
            raise ExportError(f"store: block {height} is missing; run 'anchorgate audit'")
        try:
            actual = found[height].header.height
        except FormatError as exc:
            raise ExportError(
                f"store: block {height} is unreadable ({exc}); run 'anchorgate audit'"
            ) from None
        if actual != height:
            raise ExportError(
                f"store: the row for block {height} holds block {actual}; run 'anchorgate audit'"
            )
    return found


def _batch_paths(
    reader: StoreReader, wanted: list[tuple[int, int]], leaf_counts: dict[int, int]
) -> dict[tuple[int, int], tuple[bytes, ...]]:
    """Audit paths of (height, leaf index) pairs, one tree at a time.

    The leaf hashes are read in height order, a query per run of blocks holding about
    :data:`PATH_QUERY_LEAVES` leaves (``leaf_counts``, from the signed headers): one
    query for all of them sorted 10 million rows for a device's day on a 10M-reading
    store, more than the running gateway's 24MB of DuckDB memory holds.
    """
    by_height: dict[int, list[int]] = {}
    for height, index in wanted:
        by_height.setdefault(height, []).append(index)
    paths: dict[tuple[int, int], tuple[bytes, ...]] = {}

    def prove(height: int, leaves: list[bytes]) -> None:
        tree = MerkleTree(leaves)
        for index in by_height[height]:
            if index >= tree.size:
                raise ExportError(f"store: reading {height}:{index} is outside its block")
            paths[(height, index)] = tree.inclusion_proof(index)

    runs: list[list[int]] = [[]]
    in_run = 0
    for height in sorted(by_height):
        if in_run >= PATH_QUERY_LEAVES:
            runs.append([])
            in_run = 0
        runs[-1].append(height)
        in_run += max(leaf_counts.get(height, 1), 1)
    for run in runs:
        current: int | None = None
        leaves: list[bytes] = []
        for height, leaf in reader.stream(
            "SELECT block_height, leaf_hash FROM readings "
            "WHERE block_height IN (SELECT unnest(?::BIGINT[])) "
            "ORDER BY block_height, leaf_index",
            [run],
        ):
            if height != current:
                if current is not None:
                    prove(current, leaves)
                current, leaves = height, []
            leaves.append(bytes(leaf))
        if current is not None:
            prove(current, leaves)
    return paths


def _log_proofs(
    reader: StoreReader, size: int, heights: Iterable[int], old: int | None
) -> tuple[dict[int, tuple[bytes, ...]], tuple[bytes, ...]]:
    """Inclusion proofs of ``heights`` and the consistency proof from ``old``, one pass."""
    heights = sorted(set(heights))
    wanted = [r for h in heights for r in inclusion_ranges(h, size)]
    if old:
        wanted += consistency_ranges(old, size)
    if not wanted:
        return dict.fromkeys(heights, ()), ()
    # The log's leaves are SHA-256(0x00 || block_hash), streamed from the store.
    try:
        roots = subtree_roots((hash_leaf(h) for h in reader.block_hashes(size)), size, wanted)
    except ValueError as exc:
        raise ExportError(
            f"store: the blocks table is damaged ({exc}); run 'anchorgate audit'"
        ) from None
    proofs = {h: tuple(roots[r] for r in inclusion_ranges(h, size)) for h in heights}
    consistency = tuple(roots[r] for r in consistency_ranges(old, size)) if old else ()
    return proofs, consistency


def export_bundle(
    reader: StoreReader,
    selection: Selection,
    *,
    since_head: bytes | None = None,
    limit: int = MAX_EXPORT_READINGS,
) -> Exported:
    """A bundle for the selected readings under the store's newest block.

    ``since_head`` is the hash of an older head the auditor trusts: the bundle then
    also proves that today's head extends it.
    """
    head_height = reader.head_height()
    if head_height is None:
        raise NothingToExport("the store has no blocks yet: nothing to export")
    chosen = reader.selected(selection, limit)
    if not chosen:
        raise NothingToExport("no anchored reading matches the selection")
    if len(chosen) > limit:
        raise ExportError(
            f"more than {limit} readings match; narrow the selection (time range, device)"
        )
    head = _signed(reader, head_height)
    blocks = _signed_blocks(reader, sorted({height for height, _, _ in chosen}))
    paths = _batch_paths(
        reader,
        [(height, index) for height, index, _ in chosen],
        {height: signed.header.leaf_count for height, signed in blocks.items()},
    )
    disclosures = [
        Disclosure(envelope, blocks[height], index, paths[(height, index)])
        for height, index, envelope in chosen
    ]

    old: SignedHeader | None = None
    if since_head is not None and since_head != block_hash(head.header_bytes):
        row = reader.block_by_hash(since_head)
        if row is None:
            raise NothingToExport(f"head {since_head.hex()} is not a block of this store's chain")
        old = SignedHeader(*row)
    try:
        old_height = old.header.height if old is not None else None
    except FormatError as exc:
        raise ExportError(f"store: the older head's header is unreadable: {exc}") from None
    heights = {h for h in blocks if h < head_height}
    rotation_heights = [
        int(h)
        for (h,) in reader.all(
            "SELECT height FROM blocks WHERE leaf_count = 0 AND height < ? ORDER BY height",
            [head_height],
        )
    ]
    rotations = _signed_blocks(reader, rotation_heights) if rotation_heights else {}
    heights.update(rotations)
    if old_height is not None:
        heights.add(old_height)
    proofs, consistency = _log_proofs(reader, head_height, heights, old_height)
    extends = None
    if old is not None and old_height is not None:
        extends = HeadExtension(old, proofs[old_height], consistency)
    try:
        bundle = build_bundle(
            head, disclosures, proofs, extends, [rotations[h] for h in rotation_heights]
        )
    except (FormatError, ValueError) as exc:
        raise ExportError(f"store: a stored header is unreadable: {exc}") from None
    return Exported(
        bundle=bundle,
        readings=len(disclosures),
        blocks=len(blocks),
        head_height=head_height,
        head_hash=block_hash(head.header_bytes),
    )
