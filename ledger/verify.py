"""Verifying a proof bundle offline (docs/FORMAT.md section 8.1).

Sizes and indexes are always checked against what is signed: a claimed ``batch_size``
must equal the header's ``leaf_count`` and a claimed ``log_size`` the head's height.
:func:`verify_bundle` never raises on hostile input: it returns a
:class:`VerificationReport` listing every check made and the first that failed.
The bundle's JSON is read strictly by :mod:`ledger.bundle_json`; the signed headers
(signatures, rotations, block log, head extension) are checked by
:mod:`ledger.verify_headers`.

Key rotation (``anchorgate-proof/2``): the trusted key is the gateway's original key;
the bundle's ``rotations`` lead from it to the key of every later header. Each header
must be signed by the key in effect at its height: an earlier key is ``revoked-key``,
any other ``unknown-key``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.bundle import BUNDLE_FORMATS, ROTATION_BUNDLE_FORMAT
from ledger.bundle_json import (
    Check,
    CheckFailed,
    get,
    get_bytes,
    get_hashes,
    get_int,
    get_list,
    parse_bundle,
    require,
)
from ledger.envelope import Envelope
from ledger.errors import LedgerError, ProofError
from ledger.header import BlockHeader, block_hash
from ledger.keys import PublicKey
from ledger.keyschedule import KeySchedule
from ledger.merkle import (
    hash_leaf,
    inclusion_path_length,
    root_from_inclusion_proof,
)
from ledger.verify_headers import (
    in_log,
    scheduled,
    signed_header,
    verify_extension,
    verify_rotations,
)

MAX_READINGS = 1_000_000
MAX_BLOCKS = 1_000_000  # each entry of "blocks" holds at least one reading when honest
# Searching other indexes to tell a swapped index from an edited envelope costs one
# path walk per candidate; past this batch size the verifier only says "not included".
_INDEX_SEARCH_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class VerifiedReading:
    """A disclosed reading that was proven, with the block it is anchored in."""

    envelope: Envelope
    block: BlockHeader
    leaf_index: int


@dataclass
class VerificationReport:
    """What :func:`verify_bundle` found. ``valid`` only when every check passed."""

    checks: list[Check] = field(default_factory=list)
    head: BlockHeader | None = None
    head_hash: bytes | None = None
    extends: bytes | None = None
    readings: list[VerifiedReading] = field(default_factory=list)
    rotations: list[BlockHeader] = field(default_factory=list)

    @property
    def failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def valid(self) -> bool:
        return bool(self.checks) and self.failure is None


def verify_bundle(
    bundle: bytes | str | Mapping[str, Any],
    key: PublicKey,
    trusted_head: bytes | None = None,
) -> VerificationReport:
    """Verify a bundle against the trusted gateway key; never raises on bad input.

    ``key`` is the gateway's original public key; rotations in an
    ``anchorgate-proof/2`` bundle lead from it to the keys of later blocks.

    ``trusted_head``, when given, is a block hash the auditor already trusts: the
    bundle's head must be that block, or the bundle's ``extends`` entry must prove
    that its head extends that block.
    """
    report = VerificationReport()
    try:
        _verify(bundle, key, trusted_head, report)
    except CheckFailed as failed:
        report.checks.append(failed.check)
        report.readings.clear()
    return report


def _verify(
    raw: bytes | str | Mapping[str, Any],
    key: PublicKey,
    trusted_head: bytes | None,
    report: VerificationReport,
) -> None:
    checks = report.checks
    bundle = parse_bundle(raw)
    fmt = bundle.get("format")
    require(
        fmt in BUNDLE_FORMATS,
        "version",
        "bundle",
        f"unknown bundle format {fmt!r}; this verifier knows "
        + " and ".join(map(repr, BUNDLE_FORMATS)),
    )
    gateway_id: str = get(bundle, "gateway_id", str, "bundle")
    key_id_hex: str = get(bundle, "key_id", str, "bundle")
    require(
        key_id_hex == key.key_id.hex(),
        "key",
        "bundle",
        f"bundle is for key {key_id_hex[:16]}, but the trusted key is {key.key_id.hex()[:16]}",
    )
    checks.append(Check("format", True, "bundle", f"format {fmt}"))

    keys = KeySchedule(key, fmt == ROTATION_BUNDLE_FORMAT)
    rotations: list[tuple[Mapping[str, Any], BlockHeader, bytes]] = []
    if keys.rotating:
        rotations = verify_rotations(bundle, keys, gateway_id)
    head_entry = get(bundle, "head", dict, "bundle")
    head, head_bytes = signed_header(head_entry, "head", keys, gateway_id)
    require(
        get_int(head_entry, "height", "head") == head.height,
        "format",
        "head",
        "head: claimed height differs from the signed header",
    )
    report.head, report.head_hash = head, block_hash(head_bytes)
    checks.append(Check("signature", True, f"head block {head.height}", "head signature valid"))
    for entry, header, header_bytes in rotations:
        in_log(entry, header, header_bytes, head, f"rotations[{len(report.rotations)}]")
        report.rotations.append(header)
        checks.append(
            Check(
                "rotation",
                True,
                f"block {header.height}",
                f"key {header.key_id.hex()[:16]} hands over to "
                f"{PublicKey(header.new_key or bytes(32)).key_id.hex()[:16]}",
            )
        )
    if "extends" in bundle:
        extends = get(bundle, "extends", dict, "bundle")
        report.extends = verify_extension(extends, head, keys, gateway_id)
        checks.append(
            Check(
                "head-extension",
                True,
                f"head block {head.height}",
                f"extends the older head {report.extends.hex()}",
            )
        )
    if trusted_head is not None:
        if report.head_hash == trusted_head:
            checks.append(Check("trusted-head", True, "head", "head is the trusted head"))
        else:
            require(
                report.extends == trusted_head,
                "trusted-head",
                f"head block {head.height}",
                f"head is {report.head_hash.hex()}, not the trusted head "
                f"{trusted_head.hex()}, and the bundle does not prove that it extends it",
            )
            checks.append(Check("trusted-head", True, "head", "head extends the trusted head"))

    blocks = {head.height: head}
    block_entries = get_list(bundle, "blocks", "bundle", MAX_BLOCKS)
    for i, entry in enumerate(block_entries):
        where = f"blocks[{i}]"
        require(type(entry) is dict, "format", where, f"{where} is not an object")
        header, header_bytes = signed_header(entry, where, keys, gateway_id)
        subject = f"block {header.height}"
        require(
            get_int(entry, "height", where) == header.height,
            "format",
            subject,
            f"{where}: claimed height differs from the signed header",
        )
        require(header.height not in blocks, "format", subject, f"{subject} appears twice")
        in_log(entry, header, header_bytes, head, where)
        scheduled(where, keys.check_listed, header, header_bytes, head.height)
        blocks[header.height] = header
        checks.append(Check("block-in-chain", True, subject, f"signed, in chain at {head.height}"))

    entries = get_list(bundle, "readings", "bundle", MAX_READINGS, least=1)
    seen: set[tuple[int, int]] = set()
    for i, entry in enumerate(entries):
        where = f"readings[{i}]"
        require(type(entry) is dict, "format", where, f"{where} is not an object")
        report.readings.append(_verify_reading(entry, where, blocks, seen, checks))


def _verify_reading(
    entry: Mapping[str, Any],
    where: str,
    blocks: Mapping[int, BlockHeader],
    seen: set[tuple[int, int]],
    checks: list[Check],
) -> VerifiedReading:
    height = get_int(entry, "block_height", where)
    index = get_int(entry, "leaf_index", where)
    batch_size = get_int(entry, "batch_size", where)
    envelope_bytes = get_bytes(entry, "envelope", where)
    path = get_hashes(entry, "path", where)
    subject = f"{where} (block {height}, leaf {index})"
    header = blocks.get(height)
    require(
        header is not None,
        "missing-block",
        subject,
        f"{where} is in block {height}, which the bundle does not contain",
    )
    assert header is not None  # for the type checker; require raised otherwise
    require(
        batch_size == header.leaf_count,
        "size-mismatch",
        subject,
        f"{where}: batch_size {batch_size} differs from the signed leaf count "
        f"{header.leaf_count} of block {height}",
    )
    require(
        index < header.leaf_count,
        "leaf-index",
        subject,
        f"{where}: leaf index {index} is outside block {height}'s {header.leaf_count} leaves",
    )
    require((height, index) not in seen, "format", subject, f"{subject} is disclosed twice")
    seen.add((height, index))
    try:
        envelope = Envelope.from_bytes(envelope_bytes)
    except LedgerError as exc:
        raise CheckFailed("envelope", subject, f"{where}: {exc}") from None
    leaf = hash_leaf(envelope_bytes)
    try:
        root = root_from_inclusion_proof(leaf, index, header.leaf_count, path)
    except ProofError as exc:
        raise CheckFailed("leaf-inclusion", subject, f"{where}: {exc}") from None
    if root != header.batch_root:
        other = _find_index(leaf, header, path)
        if other is not None:
            raise CheckFailed(
                "leaf-index",
                subject,
                f"{where}: the envelope is leaf {other} of block {height}, not leaf {index} "
                "as the bundle claims",
            )
        raise CheckFailed(
            "leaf-inclusion",
            subject,
            f"{where}: the envelope is not in block {height}'s batch (edited envelope "
            "or wrong path)",
        )
    require(
        header.first_received_ns <= envelope.received_ns <= header.last_received_ns,
        "time-range",
        subject,
        f"{where}: received_ns {envelope.received_ns} is outside block {height}'s signed "
        f"range {header.first_received_ns}..{header.last_received_ns}",
    )
    checks.append(Check("leaf-inclusion", True, subject, "envelope proven in its block"))
    return VerifiedReading(envelope, header, index)


def _find_index(leaf: bytes, header: BlockHeader, path: Sequence[bytes]) -> int | None:
    # Tell a swapped index apart from an edited envelope: does the same path prove the
    # leaf at some other index of the signed batch?
    size = header.leaf_count
    if size > _INDEX_SEARCH_LIMIT:
        return None
    for candidate in range(size):
        if inclusion_path_length(candidate, size) != len(path):
            continue
        if root_from_inclusion_proof(leaf, candidate, size, path) == header.batch_root:
            return candidate
    return None
