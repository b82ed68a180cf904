"""The ``anchorgate`` command line: a thin shell over the library.

Each subcommand parses its options, makes one library call and prints. Errors a
user can cause become one line on stderr and an exit code, in one place
(:func:`main`): 0 success, 1 a check failed, 2 a usage or input error.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from gateway.cli_errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError
from gateway.errors import ConfigError, GatewayError, StoreError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UserError", "cli", "main"]


class LazyGroup(click.Group):
    """A group whose commands from other modules are imported only when needed.

    ``anchorgate run`` is a long-lived service on a small box: it should not carry the
    auditor's HTTP client or the simulators' console in memory. A lazy source is
    ``"module:attribute"`` naming a command or a sequence of commands.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_sources: list[str] = []

    def _load_lazy(self) -> None:
        sources, self.lazy_sources = self.lazy_sources, []
        for source in sources:
            module_name, _, attribute = source.partition(":")
            loaded = getattr(importlib.import_module(module_name), attribute)
            for command in loaded if isinstance(loaded, list | tuple) else [loaded]:
                self.add_command(command)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self.lazy_sources:
            self._load_lazy()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_lazy()
        return super().list_commands(ctx)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anchorgate")
def cli() -> None:
    """anchorgate: anchor sensor telemetry to a signed Merkle hash chain.

    \b
    Example:
      anchorgate keygen --out keys/gateway
    """


@cli.command()
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("keys/gateway"),
    show_default=True,
    help="Path prefix: writes PREFIX.key (private, mode 0600) and PREFIX.pub.",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
def keygen(out: Path, force: bool) -> None:
    """Make the gateway's Ed25519 signing key pair.

    The private key signs every block; give the .pub file to auditors.

    \b
    Example:
      anchorgate keygen --out keys/gateway
    """
    from ledger import LedgerError, SigningKey  # noqa: PLC0415

    private, public = out.with_name(out.name + ".key"), out.with_name(out.name + ".pub")
    for path in (private, public):
        if path.exists() and not force:
            raise UserError(f"{path} exists; use --force to replace it")
    try:
        private.parent.mkdir(parents=True, exist_ok=True)
        key = SigningKey.generate()
        if force:
            private.unlink(missing_ok=True)
        key.save(private)
        key.public_key.save(public)
    except (OSError, LedgerError) as exc:
        raise UserError(f"cannot write the key: {exc}") from None
    click.echo(f"private key: {private} (mode 0600, keep it secret)")
    click.echo(f"public key:  {public}")
    click.echo(f"key id:      {key.key_id.hex()}")


@cli.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("config/gateway.toml"),
    show_default=True,
    help="The gateway configuration (TOML).",
)
def run(config_path: Path) -> None:
    """Run the gateway: MQTT in, readings anchored to the signed chain, stored in DuckDB.

    Runs until SIGTERM or SIGINT, then commits and acknowledges the open batch and
    exits 0.

    \b
    Example:
      anchorgate run -c config/gateway.toml
    """
    from gateway import logs  # noqa: PLC0415
    from gateway.config_load import load_config  # noqa: PLC0415
    from gateway.service import serve  # noqa: PLC0415
    from ledger import LedgerError, SigningKey  # noqa: PLC0415

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    logs.configure(config.log.level, config.log.format)
    try:
        key = SigningKey.load(config.gateway.key_file)
    except (LedgerError, OSError) as exc:
        raise UserError(f"gateway.key_file: {exc}") from None
    try:
        asyncio.run(serve(config, key))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None


def _register_commands() -> None:
    # Commands from other modules, imported when one of them runs or --help lists them.
    assert isinstance(cli, LazyGroup)
    cli.lazy_sources += [
        "simulators.cli:simulate",
        "gateway.auditor_cli:COMMANDS",
        "gateway.verify_cli:verify",
        "gateway.demo:demo",
        "gateway.report_cli:COMMANDS",
        "gateway.devices_cli:COMMANDS",
        "gateway.rotation_cli:rotate_key_command",
    ]


_register_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    try:
        # With standalone_mode off, click returns a command's Exit code instead of raising.
        result = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
