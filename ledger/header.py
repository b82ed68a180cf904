"""Block headers: one per batch, chained by hash and signed (docs/FORMAT.md, "Block header").

A header is the canonical msgpack array

    [version, gateway_id, height, prev_hash, log_root, batch_root, leaf_count,
     first_received_ns, last_received_ns, created_ns, key_id]

A *rotation header* (version 2) hands the chain to a new signing key: the same 11
fields, then ``new_key`` (the next key's raw 32-byte Ed25519 public key); it carries no
batch (``leaf_count`` 0, ``batch_root`` the empty-tree hash, all three times equal)
and is signed by the old key. Every later block is signed by the new key.

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
from ledger.keys import PUBLIC_KEY_SIZE, key_id_of
from ledger.merkle import EMPTY_ROOT, HASH_SIZE

BlockHash = NewType("BlockHash", bytes)

HEADER_VERSION = 1
ROTATION_VERSION = 2
VERSIONS = (HEADER_VERSION, ROTATION_VERSION)
ZERO_HASH = bytes(HASH_SIZE)
MAX_GATEWAY_ID_BYTES = 128
MAX_LEAF_COUNT = 2**32 - 1
_FIELDS = {HEADER_VERSION: 11, ROTATION_VERSION: 12}
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
    new_key: bytes | None = None
    """Rotation headers only: the raw public key that signs every later block."""

    @property
    def version(self) -> int:
        return HEADER_VERSION if self.new_key is None else ROTATION_VERSION

    @property
    def is_rotation(self) -> bool:
        return self.new_key is not None

    def __post_init__(self) -> None:
        field_str(self.gateway_id, _WHAT, "gateway_id", MAX_GATEWAY_ID_BYTES)
        field_int(self.height, _WHAT, "height")
        for name in ("prev_hash", "log_root", "batch_root", "key_id"):
            field_bytes(getattr(self, name), _WHAT, name, HASH_SIZE)
        if self.new_key is None:
            field_int(self.leaf_count, _WHAT, "leaf_count", 1, MAX_LEAF_COUNT)
        else:
            self._check_rotation(self.new_key)
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

    def _check_rotation(self, new_key: bytes) -> None:
        field_bytes(new_key, _WHAT, "new_key", PUBLIC_KEY_SIZE)
        field_int(self.leaf_count, _WHAT, "leaf_count", 0, 0)
        if self.batch_root != EMPTY_ROOT:
            raise FormatError(
                f"{_WHAT}: a rotation header's batch_root must be the empty-tree hash "
                f"(height {self.height})"
            )
        if not self.first_received_ns == self.last_received_ns == self.created_ns:
            raise FormatError(
                f"{_WHAT}: a rotation header's first_received_ns, last_received_ns and "
                f"created_ns must be equal (height {self.height})"
            )
        if key_id_of(new_key) == self.key_id:
            raise FormatError(
                f"{_WHAT}: a rotation header's new_key is the key that signs it "
                f"(height {self.height})"
            )

    def to_bytes(self) -> bytes:
        fields: list[object] = [
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
        if self.new_key is not None:
            fields.append(self.new_key)
        return pack(fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockHeader:
        """Decode strictly; raises FormatError naming the field that is wrong."""
        version = _peek_version(data)
        f = unpack_array(data, _WHAT, _FIELDS[version])
        # The peek only saw a fixint byte or fell back to version 1: check the element.
        if field_int(f[0], _WHAT, "version") != version:
            raise FormatError(f"{_WHAT}: unknown format version {f[0]}")
        return cls(
            gateway_id=field_str(f[1], _WHAT, "gateway_id", MAX_GATEWAY_ID_BYTES),
            height=field_int(f[2], _WHAT, "height"),
            prev_hash=field_bytes(f[3], _WHAT, "prev_hash", HASH_SIZE),
            log_root=field_bytes(f[4], _WHAT, "log_root", HASH_SIZE),
            batch_root=field_bytes(f[5], _WHAT, "batch_root", HASH_SIZE),
            leaf_count=field_int(f[6], _WHAT, "leaf_count", 0, MAX_LEAF_COUNT),
            first_received_ns=field_int(f[7], _WHAT, "first_received_ns"),
            last_received_ns=field_int(f[8], _WHAT, "last_received_ns"),
            created_ns=field_int(f[9], _WHAT, "created_ns"),
            key_id=field_bytes(f[10], _WHAT, "key_id", HASH_SIZE),
            new_key=(
                field_bytes(f[11], _WHAT, "new_key", PUBLIC_KEY_SIZE)
                if version == ROTATION_VERSION
                else None
            ),
        )

    def block_hash(self) -> BlockHash:
        return block_hash(self.to_bytes())


def _peek_version(data: bytes) -> int:
    """The version element of a header array, before the array is decoded strictly.

    A header is a fixarray (``0x9b`` for 11 elements, ``0x9c`` for 12) whose first
    element is a positive fixint; anything else is refused by the strict decoder,
    which is then asked for version 1's shape so that its message names the problem.
    """
    if len(data) >= 2 and data[0] in (0x9B, 0x9C) and data[1] <= 0x7F:
        version = data[1]
        if version not in VERSIONS:
            raise FormatError(
                f"{_WHAT}: unknown format version {version} (this code knows versions "
                f"{HEADER_VERSION} and {ROTATION_VERSION})"
            )
        return version
    return HEADER_VERSION


def block_hash(header_bytes: bytes) -> BlockHash:
    """SHA-256 of the header's canonical bytes."""
    return BlockHash(hashlib.sha256(header_bytes).digest())
