"""Device authenticity at intake: who may send, who must sign, and signature checks.

The gateway's policy over the device registry (gateway.devices) and the signed
reading format (ledger.device_sig, docs/FORMAT.md section 10), in three steps that run
where they are cheapest:

1. :meth:`Authenticator.admit`, on the event loop for every decoded reading: the
   registry lookups, which cost a dict access. It refuses readings of revoked
   devices, of unknown devices when signatures are required or the reading is signed,
   unsigned readings of devices that must sign, readings signed with another key than
   the device's, signed readings without ``seq`` and readings naming another asset
   than the device's registered one. A signed reading that passes comes back as a
   :class:`PendingSignature`.
2. :func:`verify_pending`, on a worker thread, once per closed batch: the Ed25519
   verifications (about 9,500 per second per core, and ``cryptography`` holds the GIL
   while verifying, so they must not run on the event loop).
3. Replays (a signed reading whose ``seq`` is at or below the highest stored for its
   device and kind, and that is not a redelivery of the stored reading) are found by
   the anchorer on the writer thread, which owns the store and the high-water marks
   (gateway.anchor, :class:`ReplayGuard`).

Each refusal is a :class:`~gateway.errors.DecodeError` whose field and problem become
the reject's ``field`` and ``reason``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.devices import Registry, RegistryFile
from gateway.errors import DecodeError
from gateway.logs import get_logger, log_event
from gateway.readings import Reading
from ledger import LedgerError, PublicKey
from ledger.device_sig import SignedReading

_log = get_logger("devices")


@dataclass(frozen=True, slots=True)
class PendingSignature:
    """A signed reading admitted by the registry, whose signature is still to be checked."""

    topic: str
    signed: SignedReading
    key: PublicKey

    def check(self) -> None:
        """Raise DecodeError (field ``signature``) unless the signature verifies."""
        try:
            self.signed.verify(self.topic, self.key)
        except LedgerError as exc:  # SignatureError; FormatError for an impossible topic
            raise DecodeError("signature", f"bad signature: {exc}") from None


def verify_pending(checks: Sequence[tuple[int, PendingSignature]]) -> list[tuple[int, str]]:
    """Verify a batch's signatures; (item index, reason) for each that fails."""
    failures: list[tuple[int, str]] = []
    for index, pending in checks:
        try:
            pending.check()
        except DecodeError as exc:
            failures.append((index, exc.problem))
    return failures


class Authenticator:
    """The registry policy: ``require_signature`` is the default for devices that set none."""

    def __init__(self, registry: RegistryFile | Registry | None, require_signature: bool) -> None:
        self._registry = registry
        self.require_signature = require_signature

    @classmethod
    def from_path(cls, path: Path | None, require_signature: bool) -> Authenticator:
        """Watch the registry file at ``path`` (None: an empty registry)."""
        if path is None:
            return cls(None, require_signature)

        def report(problem: str) -> None:
            log_event(_log, logging.ERROR, "devices.registry_unreadable", error=problem)

        return cls(RegistryFile(path, on_error=report), require_signature)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            return Registry()
        if isinstance(self._registry, Registry):
            return self._registry
        return self._registry.current()

    def admit(
        self, topic: str, reading: Reading, signed: SignedReading | None
    ) -> PendingSignature | None:
        """Refuse (DecodeError) or admit a reading; a signed one comes back to be verified."""
        device_id = reading.device_id
        device = self.registry.get(device_id)
        if device is None:
            if signed is not None:
                raise DecodeError(
                    "device_id",
                    f"unknown device {device_id!r}: not in the device registry, so its "
                    "signature cannot be checked",
                )
            if self.require_signature:
                raise DecodeError(
                    "device_id",
                    f"unknown device {device_id!r}: not in the device registry "
                    "(devices.require_signature is on)",
                )
            return None
        if device.revoked:
            raise DecodeError("device_id", f"device {device_id!r} was revoked at {device.revoked}")
        required = (
            self.require_signature if device.require_signature is None else device.require_signature
        )
        if reading.asset_id is not None and reading.asset_id != device.asset:
            raise DecodeError(
                "asset_id",
                f"{reading.asset_id[:80]!r} is not the asset registered for device "
                f"{device_id!r} ({device.asset!r})",
            )
        if signed is None:
            if required:
                raise DecodeError(
                    "signature", f"missing: device {device_id!r} must sign its readings"
                )
            return None
        if signed.key_id != device.key_id:
            raise DecodeError(
                "key_id",
                f"unknown key {signed.key_id.hex()[:16]}: device {device_id!r} is registered "
                f"with key {device.key_id.hex()[:16]}",
            )
        if reading.seq is None:
            raise DecodeError("seq", "is missing: a signed reading must carry seq (replays)")
        return PendingSignature(topic, signed, device.public_key)


class ReplayGuard:
    """The highest stored ``seq`` per device and kind, for all time (not only a window).

    Loaded from the store at start (so a restarted gateway still refuses replays) and
    advanced after each commit, on the writer thread.
    """

    def __init__(self, marks: dict[tuple[str, str], int]) -> None:
        self._marks = marks

    def mark(self, device_id: str, kind: str) -> int:
        return self._marks.get((device_id, kind), -1)

    def advance(self, device_id: str, kind: str, seq: int) -> None:
        key = (device_id, kind)
        if seq > self._marks.get(key, -1):
            self._marks[key] = seq

    @staticmethod
    def reason(device_id: str, kind: str, seq: int, mark: int, conflict: bool) -> str:
        if conflict:
            return f"replay: {device_id}/{kind} seq {seq} is already stored with another payload"
        return f"replay: {device_id}/{kind} seq {seq} is at or below {mark}, the last stored"
