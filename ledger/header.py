"""Block headers: one per batch, chained by hash and signed (docs/FORMAT.md, "Block header").

A header is the canonical msgpack array

    [version, gateway_id, height, prev_hash, log_root, batch_root, leaf_count,
     first_received_ns, last_received_ns, created_ns, key_id]

``block_hash = SHA-256(header_bytes)``; the gateway signs ``header_bytes`` with
Ed25519. ``prev_hash`` is the previous block's hash (32 zero bytes at height 0);
``log_root`` is the RFC 9162 root of the block log, the tree whose leaves are the
hashes of all earlier blocks (its size is ``height``), so any earlier block is proven
part of the chain below this one by an O(log n) inclusion proof.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NewType

from ledger.canonical import field_bytes, field_int, field_str, pack, unpack_array
from ledger.errors import FormatError
from ledger.merkle import HASH_SIZE

BlockHash = NewType("BlockHash", bytes)

HEADER_VERSION = 1
ZERO_HASH = bytes(HASH_SIZE)
MAX_GATEWAY_ID_BYTES = 128
MAX_LEAF_COUNT = 2**32 - 1
_FIELDS = 11
_WHAT = "block header"


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The signed summary of one batch and its place in the chain."""

    gateway_id: str
    height: int
    prev_hash: bytes
    log_root: bytes
    batch_root: bytes
    leaf_count: int
    first_received_ns: int
    last_received_ns: int
    created_ns: int
    key_id: bytes
    version: int = HEADER_VERSION

    def __post_init__(self) -> None:
        if self.version != HEADER_VERSION:
            raise FormatError(
                f"{_WHAT}: unknown format version {self.version!r} (this code knows "
                f"version {HEADER_VERSION})"
            )
        field_str(self.gateway_id, _WHAT, "gateway_id", MAX_GATEWAY_ID_BYTES)
        field_int(self.height, _WHAT, "height")
        for name in ("prev_hash", "log_root", "batch_root", "key_id"):
            field_bytes(getattr(self, name), _WHAT, name, HASH_SIZE)
        field_int(self.leaf_count, _WHAT, "leaf_count", 1, MAX_LEAF_COUNT)
        for name in ("first_received_ns", "last_received_ns", "created_ns"):
            field_int(getattr(self, name), _WHAT, name)
        if (self.height == 0) != (self.prev_hash == ZERO_HASH):
            raise FormatError(
                f"{_WHAT}: prev_hash must be 32 zero bytes exactly at height 0 "
                f"(height {self.height})"
            )
        if not self.first_received_ns <= self.last_received_ns <= self.created_ns:
            raise FormatError(
                f"{_WHAT}: times must satisfy first_received_ns <= last_received_ns <= "
                f"created_ns (height {self.height})"
            )

    def to_bytes(self) -> bytes:
        return pack(
            [
                self.version,
                self.gateway_id,
                self.height,
                self.prev_hash,
                self.log_root,
                self.batch_root,
                self.leaf_count,
                self.first_received_ns,
                self.last_received_ns,
                self.created_ns,
                self.key_id,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockHeader:
        """Decode strictly; raises FormatError naming the field that is wrong."""
        f = unpack_array(data, _WHAT, _FIELDS)
        version = field_int(f[0], _WHAT, "version")
        if version != HEADER_VERSION:
            raise FormatError(
                f"{_WHAT}: unknown format version {version} (this code knows "
                f"version {HEADER_VERSION})"
            )
        return cls(
            version=version,
            gateway_id=field_str(f[1], _WHAT, "gateway_id", MAX_GATEWAY_ID_BYTES),
            height=field_int(f[2], _WHAT, "height"),
            prev_hash=field_bytes(f[3], _WHAT, "prev_hash", HASH_SIZE),
            log_root=field_bytes(f[4], _WHAT, "log_root", HASH_SIZE),
            batch_root=field_bytes(f[5], _WHAT, "batch_root", HASH_SIZE),
            leaf_count=field_int(f[6], _WHAT, "leaf_count", 1, MAX_LEAF_COUNT),
            first_received_ns=field_int(f[7], _WHAT, "first_received_ns"),
            last_received_ns=field_int(f[8], _WHAT, "last_received_ns"),
            created_ns=field_int(f[9], _WHAT, "created_ns"),
            key_id=field_bytes(f[10], _WHAT, "key_id", HASH_SIZE),
        )

    def block_hash(self) -> BlockHash:
        return block_hash(self.to_bytes())


def block_hash(header_bytes: bytes) -> BlockHash:
    """SHA-256 of the header's canonical bytes."""
    return BlockHash(hashlib.sha256(header_bytes).digest())
