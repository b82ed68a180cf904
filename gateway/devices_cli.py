"""``anchorgate devices``: make device keys and edit the device registry (gateway.devices).

Thin over :mod:`gateway.devices`: each subcommand parses, makes one library call and
prints. The registry file comes from ``--registry`` or from ``devices.registry`` in the
gateway configuration (``-c``, default config/gateway.toml when it exists). A running
gateway rereads the file within a second of a change: no restart is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.cli_errors import UserError
from gateway.cli_store import DEFAULT_CONFIG
from gateway.errors import ConfigError

T = TypeVar("T")


def _registry_options(fn: Callable[..., T]) -> Callable[..., T]:
    fn = click.option(
        "--registry",
        "registry_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The device registry file (overrides devices.registry of the config).",
    )(fn)
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The gateway configuration, for devices.registry "
        "(default: config/gateway.toml when it exists).",
    )(fn)


def _registry_path(config_path: Path | None, registry_path: Path | None) -> Path:
    if registry_path is not None:
        return registry_path
    if config_path is None and DEFAULT_CONFIG.exists():
        config_path = DEFAULT_CONFIG
    if config_path is not None:
        from gateway.config_load import load_config  # noqa: PLC0415

        try:
            configured = load_config(config_path, broker_secrets=False).devices.registry
        except ConfigError as exc:
            raise UserError(f"-c: {exc}") from None
        if configured is not None:
            return configured
        raise UserError(f"{config_path}: devices.registry is not set; give --registry PATH")
    raise UserError("no device registry: give --registry PATH or -c CONFIG")


def _update(path: Path, change: Callable[[Any], Any]) -> None:
    from gateway.devices import update_registry  # noqa: PLC0415

    try:
        update_registry(path, change)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except ConfigError as exc:
        raise UserError(str(exc)) from None


@click.group()
def devices() -> None:
    """Device keys and the device registry (which devices may send, and their keys).

    \b
    Example:
      anchorgate devices keygen hs-0042 --dir keys/devices
      anchorgate devices add hs-0042 --public-key keys/devices/hs-0042.pub \\
          --asset rack-3/psu-1 --require-signature
    """


@devices.command()
@click.argument("device_ids", metavar="ID...", nargs=-1, required=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("keys/devices"),
    show_default=True,
    help="Where to write ID.key (private, mode 0600) and ID.pub for each device.",
)
def keygen(device_ids: tuple[str, ...], directory: Path) -> None:
    """Make an Ed25519 key pair for each device ID.

    Put ID.key on the device (the simulators read a directory of them with
    --device-keys) and register ID.pub with `anchorgate devices add`.

    \b
    Example:
      anchorgate devices keygen hs-0042 hs-0043 --dir keys/devices
    """
    from gateway.devices import DEVICE_ID_PATTERN  # noqa: PLC0415
    from ledger import LedgerError, SigningKey  # noqa: PLC0415

    for device_id in device_ids:
        if re.fullmatch(DEVICE_ID_PATTERN, device_id) is None:
            raise UserError(f"{device_id[:80]!r}: not a valid device id")
        private = directory / f"{device_id}.key"
        if private.exists() or private.with_suffix(".pub").exists():
            raise UserError(f"{private} or its .pub exists; refusing to replace a device key")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for device_id in device_ids:
            key = SigningKey.generate()
            key.save(directory / f"{device_id}.key")
            key.public_key.save(directory / f"{device_id}.pub")
            click.echo(f"{device_id}: {directory / device_id}.key, key id {key.key_id.hex()}")
    except (OSError, LedgerError) as exc:
        raise UserError(f"cannot write the key: {exc}") from None


@devices.command()
@click.argument("device_id", metavar="ID")
@click.option(
    "--public-key",
    "public_key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The device's Ed25519 public key (PEM file, as written by devices keygen).",
)
@click.option("--asset", required=True, help="The asset (shipment or component) it is on.")
@click.option(
    "--require-signature/--no-require-signature",
    default=None,
    help="This device must (or need not) sign; default: devices.require_signature.",
)
@click.option("--replace", is_flag=True, help="Replace an existing entry (a new key or asset).")
@_registry_options
def add(
    device_id: str,
    public_key_path: Path,
    asset: str,
    require_signature: bool | None,
    replace: bool,
    config_path: Path | None,
    registry_path: Path | None,
) -> None:
    """Register a device: its public key and its asset.

    \b
    Example:
      anchorgate devices add hs-0042 --public-key keys/devices/hs-0042.pub \\
          --asset rack-3/psu-1 --require-signature
    """
    from gateway.devices import Device, utc_now  # noqa: PLC0415
    from ledger import LedgerError, PublicKey  # noqa: PLC0415

    path = _registry_path(config_path, registry_path)
    try:
        key = PublicKey.load(public_key_path)
    except LedgerError as exc:
        raise UserError(f"--public-key: {exc}") from None
    try:
        device = Device(device_id, key, asset, require_signature, added=utc_now())
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _update(path, lambda registry: registry.with_device(device, replace=replace))
    click.echo(f"{device_id}: registered in {path} (key id {device.key_id.hex()}, asset {asset})")


@devices.command()
@click.argument("device_id", metavar="ID")
@_registry_options
def revoke(device_id: str, config_path: Path | None, registry_path: Path | None) -> None:
    """Revoke a device: every later reading from it is rejected.

    The entry stays in the registry, marked with the time, so that an auditor can
    still check what the device signed before.

    \b
    Example:
      anchorgate devices revoke hs-0042
    """
    from gateway.devices import utc_now  # noqa: PLC0415

    path = _registry_path(config_path, registry_path)
    when = utc_now()
    _update(path, lambda registry: registry.revoked(device_id, when))
    click.echo(f"{device_id}: revoked at {when} in {path}")


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@_registry_options
def list_devices(as_json: bool, config_path: Path | None, registry_path: Path | None) -> None:
    """List the registered devices, their key ids, assets and state.

    \b
    Example:
      anchorgate devices list --json
    """
    from gateway.devices import load_registry  # noqa: PLC0415

    path = _registry_path(config_path, registry_path)
    try:
        registry = load_registry(path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    rows = [device.to_json() for device in registry]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no devices in {path}")
        return
    for row in rows:
        required = {None: "default", True: "required", False: "optional"}[row["require_signature"]]
        state = f"revoked {row['revoked']}" if row["revoked"] else "active"
        click.echo(
            f"{row['device_id']}  key {row['key_id'][:16]}  asset {row['asset']}  "
            f"signature {required}  {state}"
        )


COMMANDS = [devices]
