"""Device keys for the simulators: devices that hold a key sign their readings.

A directory of ``<device_id>.key`` files (Ed25519 PKCS#8 PEM, mode 0600, as written by
``anchorgate devices keygen``). A simulated device whose id has a key file there
publishes every payload as a signed reading (docs/FORMAT.md section 10); the others
publish bare readings. The signing is :func:`ledger.device_sig.sign_reading`.
"""

from __future__ import annotations

from pathlib import Path

from ledger import LedgerError, SigningKey
from ledger.device_sig import sign_reading
from simulators.errors import ScenarioError


def load_device_keys(directory: Path) -> dict[str, SigningKey]:
    """Every ``<device_id>.key`` in ``directory``, by device id."""
    if not directory.is_dir():
        raise ScenarioError(f"device_keys: {directory} is not a directory")
    keys: dict[str, SigningKey] = {}
    for path in sorted(directory.glob("*.key")):
        try:
            keys[path.stem] = SigningKey.load(path)
        except LedgerError as exc:
            raise ScenarioError(f"device_keys: {exc}") from None
    if not keys:
        raise ScenarioError(f"device_keys: no <device_id>.key files in {directory}")
    return keys


def signed_payload(key: SigningKey, topic: str, device_id: str, payload: bytes) -> bytes:
    """``payload`` as the device's signed reading for ``topic``."""
    return sign_reading(key, topic, device_id, payload).to_bytes()
