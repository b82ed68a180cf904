"""The signed hash chain: building blocks, resuming, and verifying a stream of headers.

:class:`ChainHead` is everything needed to append the next block: its height, the
previous block's hash, the block log's frontier (O(log n) hashes) and the last
creation time. The gateway persists it with every block, so a restart continues the
chain without replaying it. :class:`ChainBuilder` seals batches into signed blocks;
:class:`ChainVerifier` checks headers one at a time in O(log n) memory and names the
first broken link.

Key rotation: :meth:`ChainBuilder.rotate` seals a rotation block (header version 2)
signed by the current key that names the next key, and switches the builder to it.
The verifier follows rotations: after one, only the new key is trusted and every key
trusted before is revoked (``revoked-key``); a key nobody introduced is
``unknown-key``. So a verifier that starts from the original key alone can check a
chain across any number of rotations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledger.canonical import field_bytes, field_int, pack, unpack_array
from ledger.errors import ChainError, FormatError, SignatureError
from ledger.header import ZERO_HASH, BlockHash, BlockHeader, block_hash
from ledger.keys import KeyId, PublicKey, SigningKey
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, Frontier, MerkleTree, hash_leaf

HEAD_VERSION = 1
_WHAT = "chain head"


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The chain's state after its last block (``height`` is the next block's height)."""

    height: int
    prev_hash: bytes
    log_nodes: tuple[bytes, ...]
    last_created_ns: int

    def __post_init__(self) -> None:
        # The frontier validates that the node count fits the size.
        Frontier(self.height, self.log_nodes)
        if len(self.prev_hash) != HASH_SIZE or (self.height == 0) != (self.prev_hash == ZERO_HASH):
            raise FormatError(f"{_WHAT}: prev_hash does not fit height {self.height}")

    @classmethod
    def genesis(cls) -> ChainHead:
        return cls(height=0, prev_hash=ZERO_HASH, log_nodes=(), last_created_ns=0)

    def log(self) -> Frontier:
        """The block log's frontier over the hashes of blocks 0..height-1."""
        return Frontier(self.height, self.log_nodes)

    def after(self, header: BlockHeader, hash_: bytes) -> ChainHead:
        """The head once ``header`` (whose hash is ``hash_``) is appended."""
        log = self.log()
        log.append(hash_leaf(hash_))
        return ChainHead(header.height + 1, hash_, tuple(log.nodes), header.created_ns)

    def to_bytes(self) -> bytes:
        return pack(
            [
                HEAD_VERSION,
                self.height,
                self.prev_hash,
                self.last_created_ns,
                b"".join(self.log_nodes),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ChainHead:
        f = unpack_array(data, _WHAT, 5)
        if field_int(f[0], _WHAT, "version") != HEAD_VERSION:
            raise FormatError(f"{_WHAT}: unknown format version {f[0]}")
        nodes = field_bytes(f[4], _WHAT, "log_nodes")
        if len(nodes) % HASH_SIZE:
            raise FormatError(f"{_WHAT}: log_nodes is not a whole number of hashes")
        return cls(
            height=field_int(f[1], _WHAT, "height"),
            prev_hash=field_bytes(f[2], _WHAT, "prev_hash", HASH_SIZE),
            last_created_ns=field_int(f[3], _WHAT, "last_created_ns"),
            log_nodes=tuple(nodes[i : i + HASH_SIZE] for i in range(0, len(nodes), HASH_SIZE)),
        )


@dataclass(frozen=True, slots=True)
class SealedBlock:
    """A batch sealed into a signed block, with its tree for drawing proofs."""

    header: BlockHeader
    header_bytes: bytes
    signature: bytes
    block_hash: BlockHash
    tree: MerkleTree
    head_after: ChainHead


class ChainBuilder:
    """Seals batches of leaf hashes into signed, chained block headers."""

    def __init__(self, gateway_id: str, key: SigningKey, head: ChainHead | None = None) -> None:
        self.gateway_id = gateway_id
        self.key = key
        self.head = head if head is not None else ChainHead.genesis()

    def rotate(self, new_key: SigningKey, created_ns: int) -> SealedBlock:
        """Seal a rotation block signed by the current key; later blocks use ``new_key``.

        The rotation block carries no batch: ``leaf_count`` 0, the empty-tree batch
        root, and ``created_ns`` (raised to the previous block's) as all three times.
        """
        head = self.head
        created = max(created_ns, head.last_created_ns)
        header = BlockHeader(
            gateway_id=self.gateway_id,
            height=head.height,
            prev_hash=head.prev_hash,
            log_root=head.log().root(),
            batch_root=EMPTY_ROOT,
            leaf_count=0,
            first_received_ns=created,
            last_received_ns=created,
            created_ns=created,
            key_id=self.key.key_id,
            new_key=new_key.public_key.raw,
        )
        sealed = self._sign(header, MerkleTree(()))
        self.key = new_key
        return sealed

    def _sign(self, header: BlockHeader, tree: MerkleTree) -> SealedBlock:
        header_bytes = header.to_bytes()
        hash_ = block_hash(header_bytes)
        sealed = SealedBlock(
            header=header,
            header_bytes=header_bytes,
            signature=self.key.sign(header_bytes),
            block_hash=hash_,
            tree=tree,
            head_after=self.head.after(header, hash_),
        )
        self.head = sealed.head_after
        return sealed

    def seal(
        self,
        leaf_hashes: Sequence[bytes],
        first_received_ns: int,
        last_received_ns: int,
        created_ns: int,
    ) -> SealedBlock:
        """Build the batch tree, then the next header, sign it and advance the head.

        ``created_ns`` is raised to the last receive time and the previous block's
        creation time if the clock says otherwise, so time never runs backwards.
        """
        if not leaf_hashes:
            raise ValueError("a block needs at least one leaf")
        tree = MerkleTree(leaf_hashes)
        head = self.head
        header = BlockHeader(
            gateway_id=self.gateway_id,
            height=head.height,
            prev_hash=head.prev_hash,
            log_root=head.log().root(),
            batch_root=tree.root,
            leaf_count=tree.size,
            first_received_ns=first_received_ns,
            last_received_ns=last_received_ns,
            created_ns=max(created_ns, last_received_ns, head.last_created_ns),
            key_id=self.key.key_id,
        )
        return self._sign(header, tree)


class ChainVerifier:
    """Checks a chain of headers one at a time, in O(log n) memory.

    Feed headers in height order; :meth:`feed` raises :class:`ChainError` on the first
    broken link. ``keys`` are the keys trusted at the start (normally the gateway's
    original key); a rotation block signed by one of them replaces them all by the key
    it names, and they join ``revoked``. ``start`` resumes from a trusted head instead
    of genesis; ``keys`` and ``revoked`` must then be the keys as they stood there.
    """

    def __init__(
        self,
        keys: Mapping[KeyId, PublicKey],
        gateway_id: str | None = None,
        start: ChainHead | None = None,
        revoked: Iterable[bytes] = (),
    ) -> None:
        self.keys = dict(keys)
        self.revoked: set[bytes] = set(revoked)
        self.rotations: list[tuple[int, PublicKey]] = []
        self.gateway_id = gateway_id
        self.head = start if start is not None else ChainHead.genesis()

    def feed(self, header_bytes: bytes, signature: bytes) -> BlockHeader:
        expected = self.head.height
        try:
            header = BlockHeader.from_bytes(header_bytes)
        except FormatError as exc:
            raise ChainError("format", expected, str(exc)) from None
        h = header.height
        key = self.keys.get(KeyId(header.key_id))
        if key is None:
            if header.key_id in self.revoked:
                raise ChainError(
                    "revoked-key",
                    h,
                    f"signed by key {header.key_id.hex()[:16]}, which an earlier rotation revoked",
                )
            raise ChainError("unknown-key", h, f"signed by unknown key {header.key_id.hex()[:16]}")
        try:
            key.verify(signature, header_bytes)
        except SignatureError as exc:
            raise ChainError("signature", h, f"bad signature: {exc}") from None
        if self.gateway_id is None:
            self.gateway_id = header.gateway_id
        elif header.gateway_id != self.gateway_id:
            raise ChainError(
                "gateway-id", h, f"gateway id {header.gateway_id!r}, expected {self.gateway_id!r}"
            )
        if h < expected:
            raise ChainError("duplicate-height", h, f"height {h} again after {expected - 1}")
        if h > expected:
            raise ChainError("height-gap", h, f"height {h} follows {expected - 1}: blocks missing")
        if header.prev_hash != self.head.prev_hash:
            raise ChainError("prev-hash", h, "previous block hash does not match block before")
        if header.log_root != self.head.log().root():
            raise ChainError("log-root", h, "block log root does not match the blocks before")
        if header.created_ns < self.head.last_created_ns:
            raise ChainError("time-backwards", h, "created before the previous block")
        if header.new_key is not None:
            new_key = PublicKey(header.new_key)
            if new_key.key_id in self.revoked:
                raise ChainError("rotation", h, "the rotation names a key revoked earlier")
            self.revoked.update(self.keys)
            self.keys = {new_key.key_id: new_key}
            self.rotations.append((h, new_key))
        self.head = self.head.after(header, block_hash(header_bytes))
        return header


def verify_chain(
    blocks: Iterable[tuple[bytes, bytes]],
    keys: Mapping[KeyId, PublicKey],
    gateway_id: str | None = None,
) -> ChainHead:
    """Verify (header_bytes, signature) pairs from genesis; return the resulting head.

    ``keys`` are the keys trusted at genesis; rotations are followed (see
    :class:`ChainVerifier`).
    """
    verifier = ChainVerifier(keys, gateway_id)
    for header_bytes, signature in blocks:
        verifier.feed(header_bytes, signature)
    return verifier.head
