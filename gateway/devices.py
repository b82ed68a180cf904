"""The device registry: which devices exist, their Ed25519 public keys and their assets.

A TOML file (``[devices] registry`` in gateway.toml; ``anchorgate devices add|list|revoke``
edit it, docs/GATEWAY.md "Device authenticity")::

    # anchorgate device registry
    version = 1

    [devices."hs-0042"]
    public_key = "ed25519:<64 hex digits of the raw public key>"
    asset = "rack-3/psu-1"
    require_signature = true          # optional; absent: [devices] require_signature
    added = "2026-11-24T12:00:00Z"
    revoked = "2026-11-25T08:00:00Z"  # present once revoked

:func:`load_registry` reads and checks the file into a frozen :class:`Registry`; every
mistake is a :class:`~gateway.errors.ConfigError` naming the file, the device and the
key. :func:`save_registry` writes it back atomically (temporary file and rename), so a
gateway that reloads it never sees half a file. :class:`RegistryFile` is the gateway's
view: it reloads the file when it changes, at most once a second, and keeps the last
good version when an edit is broken.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from ledger import KeyFileError, PublicKey

REGISTRY_VERSION = 1
DEVICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
ASSET_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}"
_KEY_PREFIX = "ed25519:"
_DEVICE_KEYS = {"public_key", "asset", "require_signature", "added", "revoked"}


def utc_now() -> str:
    """The current time as the registry writes it: ISO 8601 UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Device:
    """One registered device."""

    device_id: str
    public_key: PublicKey
    asset: str
    require_signature: bool | None = None  # None: the registry's / config's default
    added: str = ""
    revoked: str | None = None

    def __post_init__(self) -> None:
        if re.fullmatch(DEVICE_ID_PATTERN, self.device_id) is None:
            raise ValueError(
                f"device id {self.device_id[:80]!r}: must be 1 to 64 letters, digits or "
                "_ . : - starting with a letter or digit"
            )
        if re.fullmatch(ASSET_ID_PATTERN, self.asset) is None:
            raise ValueError(f"asset {self.asset[:80]!r}: not a valid asset id")

    @property
    def key_id(self) -> bytes:
        return bytes(self.public_key.key_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "key_id": self.key_id.hex(),
            "public_key": _KEY_PREFIX + self.public_key.raw.hex(),
            "asset": self.asset,
            "require_signature": self.require_signature,
            "added": self.added or None,
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class Registry:
    """Every registered device by id (revoked ones included, marked)."""

    devices: Mapping[str, Device] = field(default_factory=dict)

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def __iter__(self) -> Iterator[Device]:
        return iter(sorted(self.devices.values(), key=lambda d: d.device_id))

    def __len__(self) -> int:
        return len(self.devices)

    def with_device(self, device: Device, *, replace: bool = False) -> Registry:
        """A registry with ``device`` added; ValueError if it exists and not ``replace``."""
        old = self.devices.get(device.device_id)
        if old is not None and not replace:
            state = " (revoked)" if old.revoked else ""
            raise ValueError(
                f"device {device.device_id!r} is already registered{state}; "
                "use --replace to give it a new key or asset"
            )
        return Registry({**self.devices, device.device_id: device})

    def revoked(self, device_id: str, when: str) -> Registry:
        """A registry in which ``device_id`` is revoked; ValueError if it is unknown."""
        device = self.devices.get(device_id)
        if device is None:
            raise ValueError(f"device {device_id!r} is not registered")
        if device.revoked:
            raise ValueError(f"device {device_id!r} was already revoked at {device.revoked}")
        return Registry({**self.devices, device_id: dataclasses.replace(device, revoked=when)})


def parse_public_key(text: str, where: str) -> PublicKey:
    """``ed25519:<hex>`` or a PEM public key."""
    if text.startswith(_KEY_PREFIX):
        raw = text[len(_KEY_PREFIX) :]
        if re.fullmatch(r"[0-9a-f]{64}", raw) is None:
            raise ConfigError(f"{where}: public_key: 'ed25519:' must be followed by 64 hex digits")
        return PublicKey(bytes.fromhex(raw))
    try:
        return PublicKey.from_pem(text.encode(), where)
    except KeyFileError as exc:
        raise ConfigError(f"{where}: public_key: {exc}") from None


def _device(device_id: str, table: object, where: str) -> Device:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - _DEVICE_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key")
    for key in ("public_key", "asset"):
        if not isinstance(table.get(key), str):
            raise ConfigError(f"{where}.{key}: missing or not a string")
    require = table.get("require_signature")
    if require is not None and not isinstance(require, bool):
        raise ConfigError(f"{where}.require_signature: must be true or false")
    for key in ("added", "revoked"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{where}.{key}: must be a string (a time)")
    try:
        return Device(
            device_id=device_id,
            public_key=parse_public_key(table["public_key"], where),
            asset=table["asset"],
            require_signature=require,
            added=table.get("added", ""),
            revoked=table.get("revoked"),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_registry(text: str, source: str = "registry") -> Registry:
    """Check the TOML text of a registry into a :class:`Registry`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"version", "devices"})
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key (known: version, devices)")
    version = document.get("version", REGISTRY_VERSION)
    if version != REGISTRY_VERSION:
        raise ConfigError(
            f"{source}: version {version!r} is not known (this anchorgate knows {REGISTRY_VERSION})"
        )
    tables = document.get("devices", {})
    if not isinstance(tables, dict):
        raise ConfigError(f'{source}: devices: must be a table of [devices."ID"] tables')
    devices = {
        device_id: _device(device_id, table, f"{source}: devices.{json.dumps(device_id)}")
        for device_id, table in tables.items()
    }
    return Registry(devices)


def load_registry(path: Path) -> Registry:
    """Read a registry file; a missing file is an empty registry."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return Registry()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the device registry: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_registry(text, str(path))


def _toml_string(value: str) -> str:
    # JSON's escapes (with ensure_ascii) are all valid in a TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def dump_registry(registry: Registry) -> str:
    """The registry as TOML text (devices sorted by id)."""
    lines = [
        "# anchorgate device registry: edited by `anchorgate devices add|revoke`.",
        "# Each device's readings are checked against its Ed25519 public key.",
        f"version = {REGISTRY_VERSION}",
    ]
    for device in registry:
        lines += [
            "",
            f"[devices.{_toml_string(device.device_id)}]",
            f"public_key = {_toml_string(_KEY_PREFIX + device.public_key.raw.hex())}",
            f"asset = {_toml_string(device.asset)}",
        ]
        if device.require_signature is not None:
            lines.append(f"require_signature = {str(device.require_signature).lower()}")
        if device.added:
            lines.append(f"added = {_toml_string(device.added)}")
        if device.revoked:
            lines.append(f"revoked = {_toml_string(device.revoked)}")
    return "\n".join(lines) + "\n"


def save_registry(registry: Registry, path: Path) -> None:
    """Write the registry atomically: a temporary file beside it, then a rename."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(dump_registry(registry), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the device registry: {exc.strerror}") from None


def update_registry(path: Path, change: Callable[[Registry], Registry]) -> Registry:
    """Load, change and save the registry at ``path``; ValueError from ``change`` passes."""
    registry = change(load_registry(path))
    save_registry(registry, path)
    return registry


def load_device_keys(path: Path) -> dict[str, PublicKey]:
    """Device public keys for an auditor: a registry file, or a directory of ``ID.pub``.

    Revoked devices keep their keys here: what they signed before is still checked.
    """
    path = Path(path)
    if path.is_dir():
        keys: dict[str, PublicKey] = {}
        for pub in sorted(path.glob("*.pub")):
            try:
                keys[pub.stem] = PublicKey.load(pub)
            except KeyFileError as exc:
                raise ConfigError(str(exc)) from None
        if not keys:
            raise ConfigError(f"{path}: no <device_id>.pub files in the directory")
        return keys
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    return {device.device_id: device.public_key for device in load_registry(path)}


class RegistryFile:
    """The registry at ``path`` as the running gateway sees it, reloaded when it changes.

    :meth:`current` looks at the file's modification time and size at most every
    ``interval`` seconds; a changed file is reloaded, and a broken one is reported to
    ``on_error`` once while the last good registry stays in force.
    """

    def __init__(
        self,
        path: Path,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._interval = interval
        self._clock = clock
        self._on_error = on_error
        self._stamp = self._stat()
        self.registry = load_registry(self.path)  # a broken file at start is an error
        self._checked = clock()
        self._bad_stamp: tuple[int, int] | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def current(self) -> Registry:
        now = self._clock()
        if now - self._checked < self._interval:
            return self.registry
        self._checked = now
        stamp = self._stat()
        if stamp in (self._stamp, self._bad_stamp):
            return self.registry
        try:
            self.registry = load_registry(self.path)
        except ConfigError as exc:
            self._bad_stamp = stamp
            if self._on_error is not None:
                self._on_error(str(exc))
            return self.registry
        self._stamp = stamp
        self._bad_stamp = None
        return self.registry
