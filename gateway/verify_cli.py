"""``anchorgate verify``: check a proof bundle offline, with no store and no network.

Prints what was proven in words a person can check (gateway, head, per device the
kinds, assets, time span, count and seq gaps, a table of the readings), or with
``--json`` the same as a machine-readable report. Exit 0 valid, 1 invalid (the first
failed check named), 2 usage. ``--checkpoint`` and ``--save-checkpoint`` carry a
trusted head from one verification to the next.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from gateway.cli_errors import EXIT_FAILED, UserError

if TYPE_CHECKING:
    from ledger import PublicKey

MAX_BUNDLE_FILE = 64 * 1024 * 1024


def _read_bundle(path: str) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_BUNDLE_FILE + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_BUNDLE_FILE + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return data


@click.command()
@click.argument("bundle", metavar="BUNDLE")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway's public key (PEM), obtained from a trusted source.",
)
@click.option("--head", "head_hex", help="A head hash you already trust (hex).")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint file saved by an earlier --save-checkpoint, or a checkpoint message "
    "the gateway published (anchorgate-checkpoint/1, signature checked): its head is trusted.",
)
@click.option(
    "--save-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="When valid, save this bundle's head here for the next verification.",
)
@click.option(
    "--device-keys",
    "device_keys_path",
    type=click.Path(path_type=Path),
    help="Device public keys: a device registry file or a directory of <device_id>.pub; "
    "signed readings are then checked against them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
def verify(
    bundle: str,
    key_path: Path,
    head_hex: str | None,
    checkpoint: Path | None,
    save_checkpoint: Path | None,
    device_keys_path: Path | None,
    as_json: bool,
) -> None:
    """Verify a proof bundle offline (no store, no network).

    Exit 0 when every check passes, 1 when one fails (the first failure is named),
    2 on a usage error. BUNDLE may be - for stdin. Each reading shows its origin:
    "signed by device X (key id ...)" when its device signed it (checked with
    --device-keys; a signature that fails exits 1), else "received by gateway G".

    \b
    Examples:
      anchorgate verify ship-1.proof.json --key gateway.pub
      anchorgate verify ship-1.proof.json --key gateway.pub --checkpoint last.json \\
          --save-checkpoint last.json
      anchorgate verify ship-1.proof.json --key gateway.pub --device-keys devices.toml
    """
    from gateway.readapi import parse_head  # noqa: PLC0415
    from gateway.verify_report import render, summarize  # noqa: PLC0415
    from ledger import LedgerError, PublicKey, verify_bundle  # noqa: PLC0415

    try:
        key = PublicKey.load(key_path)
    except LedgerError as exc:
        raise UserError(f"--key: {exc}") from None
    trusted = None
    try:
        if head_hex and checkpoint:
            raise ValueError("give --head or --checkpoint, not both")
        if head_hex:
            trusted = parse_head(head_hex, "--head")
        elif checkpoint:
            trusted = _load_checkpoint(checkpoint, key)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    device_keys = None
    if device_keys_path is not None:
        from gateway.devices import load_device_keys  # noqa: PLC0415
        from gateway.errors import ConfigError  # noqa: PLC0415

        try:
            device_keys = load_device_keys(device_keys_path)
        except ConfigError as exc:
            raise UserError(f"--device-keys: {exc}") from None
    data = _read_bundle(bundle)
    report = verify_bundle(data, key, trusted)
    summary = summarize(report, device_keys)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=160)  # files and pipes: no wrapping
        render(summary, console)
    if not report.valid or summary["device_signatures"]["failed"]:
        raise click.exceptions.Exit(EXIT_FAILED)
    if save_checkpoint is not None and report.head is not None and report.head_hash:
        save = {
            "gateway_id": report.head.gateway_id,
            "key_id": key.key_id.hex(),
            "height": report.head.height,
            "head_hash": report.head_hash.hex(),
        }
        try:
            save_checkpoint.write_text(json.dumps(save, indent=1) + "\n")
        except OSError as exc:
            raise UserError(f"cannot write {save_checkpoint}: {exc.strerror}") from None


def _load_checkpoint(path: Path, key: PublicKey) -> bytes:
    from gateway.checkpoints import CHECKPOINT_FORMAT, Checkpoint  # noqa: PLC0415
    from gateway.readapi import parse_head  # noqa: PLC0415
    from ledger import LedgerError  # noqa: PLC0415

    key_id = key.key_id.hex()
    try:
        text = path.read_bytes()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--checkpoint {path}: not a checkpoint file ({exc})") from None
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        # A message the gateway published (gateway.checkpoints): trusted once it verifies.
        try:
            published = Checkpoint.from_json(text)
            published.verify(key)
        except LedgerError as exc:
            raise ValueError(f"--checkpoint {path}: {exc}") from None
        return published.block_hash
    if not isinstance(data, dict) or not isinstance(data.get("head_hash"), str):
        raise ValueError(f"--checkpoint {path}: no head_hash in it")
    if data.get("key_id") != key_id:
        raise ValueError(f"--checkpoint {path}: saved for another gateway key")
    return parse_head(data["head_hash"], f"--checkpoint {path}")
