"""Which key signs which blocks of a store's chain, from its rotation blocks.

A key rotation (``anchorgate rotate-key``, docs/FORMAT.md section 5.3) is a block with
a version 2 header and no readings (``leaf_count`` 0): signed by the old key, it names
the new one, which signs every later block. The blocks table holds the whole history:
the rotation headers give each later key; the original key's public half is kept in
meta ``original_public_key`` (written by the first rotation), since no header holds it.

:class:`KeyHistory` answers "which key signs block h, and which keys are revoked
there", which a :class:`ledger.ChainVerifier` resuming mid-chain needs (the start-up
check, the audit's parallel ranges).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import StoreMismatchError
from ledger import BlockHeader, FormatError, KeyFileError, KeyId, PublicKey

ROTATIONS_SQL = "SELECT height, header FROM blocks WHERE leaf_count = 0 ORDER BY height"
ORIGINAL_KEY_META = "original_public_key"


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation block: at ``height``, key ``old_key_id`` handed over to ``new_key``."""

    height: int
    old_key_id: bytes
    new_key: PublicKey


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """The chain's keys: ``original`` signs from height 0, then each rotation's new key."""

    original: PublicKey
    rotations: tuple[Rotation, ...]

    def key_at(self, height: int) -> tuple[PublicKey, frozenset[bytes]]:
        """The key that signs block ``height``, and the keys revoked by then."""
        before = [r for r in self.rotations if r.height < height]
        if not before:
            return self.original, frozenset()
        return before[-1].new_key, frozenset(r.old_key_id for r in before)

    def verifier_keys(self, height: int) -> tuple[dict[KeyId, PublicKey], frozenset[bytes]]:
        """``keys`` and ``revoked`` for a ChainVerifier that starts at block ``height``."""
        key, revoked = self.key_at(height)
        return {key.key_id: key}, revoked

    @property
    def current(self) -> PublicKey:
        """The key that signs the next block."""
        return self.rotations[-1].new_key if self.rotations else self.original


def read_rotations(rows: Sequence[tuple[Any, ...]]) -> tuple[Rotation, ...]:
    """Rotations from ``(height, header)`` rows of :data:`ROTATIONS_SQL`."""
    found = []
    for height, header_bytes in rows:
        try:
            header = BlockHeader.from_bytes(bytes(header_bytes))
        except FormatError as exc:
            raise StoreMismatchError(f"store: block {height}: unreadable header: {exc}") from None
        if header.new_key is None:
            raise StoreMismatchError(
                f"store: block {height} has no readings but is not a rotation block"
            )
        found.append(Rotation(int(height), header.key_id, PublicKey(header.new_key)))
    return tuple(found)


def store_history(
    query: Callable[[str], Sequence[tuple[Any, ...]]],
    meta: Callable[[str], bytes | None],
    configured: PublicKey,
) -> KeyHistory:
    """The key history of the gateway's own store, whose current key is ``configured``.

    Without rotations the original key is the configured one. With rotations it comes
    from meta ``original_public_key`` and must be the first rotation's signer.
    """
    rotations = read_rotations(query(ROTATIONS_SQL))
    if not rotations:
        return KeyHistory(configured, ())
    raw = meta(ORIGINAL_KEY_META)
    if raw is None:
        raise StoreMismatchError(
            f"store: the chain rotated its key at block {rotations[0].height}, but meta "
            f"{ORIGINAL_KEY_META} is missing"
        )
    try:
        original = PublicKey(raw)
    except KeyFileError as exc:
        raise StoreMismatchError(f"store: meta {ORIGINAL_KEY_META}: {exc}") from None
    if original.key_id != rotations[0].old_key_id:
        raise StoreMismatchError(
            f"store: meta {ORIGINAL_KEY_META} is key {original.key_id.hex()[:16]}, but "
            f"the first rotation (block {rotations[0].height}) was signed by "
            f"{rotations[0].old_key_id.hex()[:16]}"
        )
    return KeyHistory(original, rotations)


def check_current(history: KeyHistory, configured: PublicKey, setting: str) -> None:
    """Refuse a configured key that is not the chain's current key, saying which is."""
    current = history.current
    if configured.key_id == current.key_id:
        return
    revoked_at = next(
        (r.height for r in history.rotations if r.old_key_id == configured.key_id), None
    )
    if revoked_at is not None:
        raise StoreMismatchError(
            f"{setting} holds key {configured.key_id.hex()[:16]}, which the key rotation at "
            f"block {revoked_at} revoked; the chain's current key is "
            f"{current.key_id.hex()[:16]} (point {setting} at the key rotate-key wrote)"
        )
    raise StoreMismatchError(
        f"{setting} holds key {configured.key_id.hex()[:16]}, but the chain's current key "
        f"is {current.key_id.hex()[:16]}"
    )
