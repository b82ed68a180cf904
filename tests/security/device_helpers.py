"""Shared by the device authenticity tests: device keys, a registry, signed messages."""

from __future__ import annotations

from pathlib import Path

from gateway.devices import Device, Registry, save_registry
from gateway.readings import TemperatureReading, encode_reading, topic_for
from ledger import SigningKey
from ledger.device_sig import sign_reading

NOW_MS = 1_780_000_000_000
NOW_NS = NOW_MS * 1_000_000
KEYS = {
    name: SigningKey.from_seed(bytes([i]) * 32)
    for i, name in enumerate(("dev-a", "dev-b", "dev-r", "dev-o", "dev-x", "intruder"), start=1)
}


def asset_of(device_id: str) -> str:
    return f"asset-{device_id}"


def registry(require: dict[str, bool | None] | None = None) -> Registry:
    """dev-a and dev-b active, dev-r revoked, dev-o never required to sign; dev-x unknown."""
    require = require or {}
    devices = {}
    for device_id in ("dev-a", "dev-b", "dev-r", "dev-o"):
        devices[device_id] = Device(
            device_id,
            KEYS[device_id].public_key,
            asset_of(device_id),
            require_signature=False if device_id == "dev-o" else require.get(device_id),
            added="2026-11-24T00:00:00Z",
            revoked="2026-11-24T01:00:00Z" if device_id == "dev-r" else None,
        )
    return Registry(devices)


def write_registry(path: Path) -> Path:
    save_registry(registry(), path)
    return path


def reading_bytes(
    device_id: str, seq: int | None, celsius: float = 20.0, ts: int = NOW_MS
) -> bytes:
    return encode_reading(TemperatureReading(device_id, seq, ts, celsius, asset_of(device_id)))


def signed(
    device_id: str,
    seq: int | None,
    celsius: float = 20.0,
    *,
    key: str | None = None,
    topic_device: str | None = None,
    ts: int = NOW_MS,
) -> tuple[str, bytes]:
    """(topic, payload) of a reading signed by ``key`` (default: the device's own key)."""
    topic = topic_for(topic_device or device_id, "temperature")
    payload = reading_bytes(device_id, seq, celsius, ts)
    signer = KEYS[key or device_id]
    return topic, sign_reading(signer, topic, device_id, payload).to_bytes()


def unsigned(device_id: str, seq: int | None, celsius: float = 20.0) -> tuple[str, bytes]:
    return topic_for(device_id, "temperature"), reading_bytes(device_id, seq, celsius)


def bad_signature(device_id: str, seq: int) -> tuple[str, bytes]:
    topic, payload = signed(device_id, seq)
    return topic, payload[:-1] + bytes([payload[-1] ^ 0x01])
