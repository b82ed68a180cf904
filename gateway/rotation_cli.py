"""``anchorgate rotate-key``: the command over :func:`gateway.rotation.rotate_key`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli_errors import UserError
from gateway.config_load import load_config
from gateway.errors import ConfigError, StoreError, StoreMismatchError
from gateway.rotation import RotationError, rotate_key


@click.command("rotate-key")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("config/gateway.toml"),
    show_default=True,
    help="The gateway configuration (TOML).",
)
@click.option(
    "--new-key",
    "new_key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the new private key (must not exist). "
    "Default: next to gateway.key_file, named after the new key id.",
)
@click.option(
    "--keep-config",
    is_flag=True,
    help="Do not edit the configuration; print the change to make instead.",
)
def rotate_key_command(config_path: Path, new_key: Path | None, keep_config: bool) -> None:
    """Continue the chain under a new signing key (on a STOPPED gateway).

    Appends a rotation block signed by the current key (gateway.key_file) that names
    the new key, writes the new private key (mode 0600, never over an existing file)
    and points gateway.key_file at it. Auditors keep the ORIGINAL public key: proof
    bundles carry the rotations, and blocks the old key signs afterwards fail as
    revoked-key.

    \b
    Example:
      anchorgate rotate-key -c config/gateway.toml
    """
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    try:
        result = rotate_key(config, config_path, new_key, update_config=not keep_config)
    except (RotationError, StoreMismatchError) as exc:
        raise UserError(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"rotated at block {result.height}: key {result.old_key_id.hex()[:16]} handed the "
        f"chain to key {result.new_key_id.hex()[:16]}"
    )
    click.echo(f"new private key: {result.new_key_file} (mode 0600, keep it secret)")
    click.echo(f"new key id:      {result.new_key_id.hex()}")
    click.echo(f"rotation block:  {result.block_hash.hex()}")
    if result.config_updated:
        click.echo(f"config:          {result.config_note}")
    else:
        click.echo(f"config:          NOT changed; {result.config_note}")
        click.echo(f"                 (key_file = {json.dumps(str(result.new_key_file))})")
    click.echo(
        "auditors keep the original public key; take the old private key offline or "
        "destroy it (blocks it signs from now on fail as revoked-key)"
    )
