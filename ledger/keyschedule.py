"""Which key signs which heights of a chain shown in a proof bundle (docs/FORMAT.md 8.2).

A verifier trusts one key, the gateway's original key. An ``anchorgate-proof/2``
bundle lists the chain's rotation blocks; each, signed by the key in effect at its
height, names the key that signs every later block. :class:`KeySchedule` holds that
list of (first height, key) and names what is wrong with a header's key:

- ``revoked-key``: a key that a rotation at or before the header's height replaced;
- ``unknown-key``: a key no rotation before the header's height introduced;
- ``rotation``: a rotation out of order, naming a key used before, or a rotation
  header that the bundle's list leaves out.

For ``anchorgate-proof/1`` (``rotating`` False) the schedule is the trusted key alone:
a header by another key is ``key`` and a rotation header is ``format``. Failures are
:class:`ledger.errors.ChainError` whose ``reason`` is the bundle check's name.
"""

from __future__ import annotations

from ledger.errors import ChainError
from ledger.header import BlockHeader
from ledger.keys import PublicKey


class KeySchedule:
    """The trusted key from height 0, then each accepted rotation's new key."""

    def __init__(self, trusted: PublicKey, rotating: bool) -> None:
        self.rotating = rotating
        self.schedule: list[tuple[int, PublicKey]] = [(0, trusted)]  # (first height, key)
        self.rotations: dict[int, bytes] = {}  # height -> rotation header bytes

    def key_for(self, header: BlockHeader) -> PublicKey:
        """The key that must have signed ``header``; ChainError if it names another."""
        height, found = header.height, header.key_id.hex()[:16]
        if not self.rotating:
            key = self.schedule[0][1]
            if header.is_rotation:
                raise ChainError("format", height, "a rotation header (version 2) in a /1 bundle")
            if header.key_id != key.key_id:
                raise ChainError(
                    "key",
                    height,
                    f"signed by key {found}, not the trusted key {key.key_id.hex()[:16]}",
                )
            return key
        in_effect = [key for first, key in self.schedule if first <= height]
        current = in_effect[-1]
        if header.key_id == current.key_id:
            return current
        if any(header.key_id == key.key_id for key in in_effect):
            raise ChainError(
                "revoked-key",
                height,
                f"signed by key {found}, revoked by a rotation before it; the key at that "
                f"height is {current.key_id.hex()[:16]}",
            )
        raise ChainError(
            "unknown-key",
            height,
            f"signed by key {found}, which no rotation before it introduced; the key at "
            f"that height is {current.key_id.hex()[:16]}",
        )

    def add_rotation(self, header: BlockHeader, header_bytes: bytes) -> None:
        """Accept a rotation header (already checked with :meth:`key_for` and signed)."""
        height = header.height
        if header.new_key is None:
            raise ChainError("rotation", height, "not a rotation block (header version 1)")
        last = max(self.rotations, default=-1)
        if height <= last:
            raise ChainError("rotation", height, f"rotation not above the one before ({last})")
        new_key = PublicKey(header.new_key)
        if any(new_key.key_id == key.key_id for _, key in self.schedule):
            raise ChainError(
                "rotation", height, f"names key {new_key.key_id.hex()[:16]}, in use before"
            )
        self.schedule.append((height + 1, new_key))
        self.rotations[height] = header_bytes

    def check_listed(self, header: BlockHeader, header_bytes: bytes, head_height: int) -> None:
        """A rotation header below the head must be the one the bundle's rotations list."""
        if (
            self.rotating
            and header.is_rotation
            and header.height < head_height
            and self.rotations.get(header.height) != header_bytes
        ):
            raise ChainError(
                "rotation", header.height, "a rotation block the bundle's rotations do not list"
            )
