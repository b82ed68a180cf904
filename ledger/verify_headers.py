"""The signed headers of a proof bundle (docs/FORMAT.md section 8.1): each header's
signature under the key in effect at its height, the key rotations that lead there from
the trusted key, each block's place in the head's block log, and the proof that the head
extends an older head the auditor trusts.

Every failure raises :class:`~ledger.bundle_json.CheckFailed` naming the check, for
:mod:`ledger.verify` to report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ledger.bundle_json import (
    MAX_PROOF_HASHES,
    CheckFailed,
    get_bytes,
    get_hashes,
    get_int,
    get_list,
    require,
)
from ledger.errors import ChainError, FormatError, ProofError, SignatureError
from ledger.header import BlockHeader, block_hash
from ledger.keyschedule import KeySchedule
from ledger.merkle import hash_leaf, root_from_inclusion_proof, verify_consistency

_T = TypeVar("_T")


def scheduled(where: str, step: Callable[..., _T], *args: Any) -> _T:
    """Run a key schedule step; its ChainError becomes the failed check it names."""
    try:
        return step(*args)
    except ChainError as exc:
        raise CheckFailed(exc.reason, where, f"{where}: {exc}") from None


def signed_header(
    entry: Mapping[str, Any], where: str, keys: KeySchedule, gateway_id: str
) -> tuple[BlockHeader, bytes]:
    header_bytes = get_bytes(entry, "header", where)
    signature = get_bytes(entry, "signature", where)
    try:
        header = BlockHeader.from_bytes(header_bytes)
    except FormatError as exc:
        raise CheckFailed("format", where, f"{where}: {exc}") from None
    key = scheduled(where, keys.key_for, header)
    require(
        header.gateway_id == gateway_id,
        "gateway",
        where,
        f"{where} is from gateway {header.gateway_id!r}, the bundle is for {gateway_id!r}",
    )
    try:
        key.verify(signature, header_bytes)
    except SignatureError as exc:
        raise CheckFailed("signature", where, f"{where}: {exc}") from None
    return header, header_bytes


def verify_rotations(
    bundle: Mapping[str, Any], keys: KeySchedule, gateway_id: str
) -> list[tuple[Mapping[str, Any], BlockHeader, bytes]]:
    """Follow ``rotations`` from the trusted key (their place in the chain comes later)."""
    entries = get_list(bundle, "rotations", "bundle", MAX_PROOF_HASHES)
    found = []
    for i, entry in enumerate(entries):
        where = f"rotations[{i}]"
        require(type(entry) is dict, "format", where, f"{where} is not an object")
        header, header_bytes = signed_header(entry, where, keys, gateway_id)
        require(
            get_int(entry, "height", where) == header.height,
            "format",
            where,
            f"{where}: claimed height differs from the signed header",
        )
        scheduled(where, keys.add_rotation, header, header_bytes)
        found.append((entry, header, header_bytes))
    return found


def in_log(
    entry: Mapping[str, Any],
    header: BlockHeader,
    header_bytes: bytes,
    head: BlockHeader,
    where: str,
) -> None:
    """A ``blocks`` or ``rotations`` entry: below the head, and in the head's block log."""
    subject = f"block {header.height}"
    require(
        header.height < head.height,
        "chain-truncated",
        subject,
        f"{subject} is not below the head (height {head.height}): the chain shown ends before it",
    )
    log_size = get_int(entry, "log_size", where)
    require(
        log_size == head.height,
        "size-mismatch",
        subject,
        f"{where}: log_size {log_size} differs from the signed head height {head.height}",
    )
    try:
        root = root_from_inclusion_proof(
            hash_leaf(block_hash(header_bytes)),
            header.height,
            head.height,
            get_hashes(entry, "log_proof", where),
        )
    except ProofError as exc:
        raise CheckFailed("block-in-chain", subject, f"{subject}: {exc}") from None
    require(
        root == head.log_root,
        "block-in-chain",
        subject,
        f"{subject} is not in the chain below head {head.height} (log proof fails)",
    )


def verify_extension(
    entry: Mapping[str, Any], head: BlockHeader, keys: KeySchedule, gateway_id: str
) -> bytes:
    """Check an ``extends`` entry; return the older head's block hash."""
    old, old_bytes = signed_header(entry, "extends", keys, gateway_id)
    subject = f"older head block {old.height}"
    require(
        get_int(entry, "height", "extends") == old.height,
        "format",
        subject,
        "extends: claimed height differs from the signed header",
    )
    require(
        old.height < head.height,
        "head-extension",
        subject,
        f"{subject} is not older than the head (height {head.height})",
    )
    old_hash = block_hash(old_bytes)
    log_proof = get_hashes(entry, "log_proof", "extends")
    consistency = get_hashes(entry, "consistency", "extends")
    try:
        root = root_from_inclusion_proof(hash_leaf(old_hash), old.height, head.height, log_proof)
        require(
            root == head.log_root,
            "head-extension",
            subject,
            f"{subject} is not in the chain below head {head.height} (log proof fails)",
        )
        if old.height:
            verify_consistency(old.height, head.height, old.log_root, head.log_root, consistency)
        else:
            require(not consistency, "head-extension", subject, "proof from height 0 not empty")
    except ProofError as exc:
        raise CheckFailed("head-extension", subject, f"{subject}: {exc}") from None
    scheduled("extends", keys.check_listed, old, old_bytes, head.height)
    return old_hash
