"""What the store-reading commands share: the -c/--store/--api options and the config.

``export``, ``status``, ``audit``, ``report`` and ``export-parquet`` find the store
(and the read API and the gateway's public key) from ``-c CONFIG`` (default:
config/gateway.toml when it exists), with ``--store`` and ``--api`` overriding it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import click

from gateway.cli_errors import UserError
from gateway.errors import ConfigError

DEFAULT_CONFIG = Path("config/gateway.toml")
DEFAULT_API = "http://127.0.0.1:8787"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Configured:
    """What the gateway config says about the store (all None without a config)."""

    store: Path | None = None
    api_url: str | None = None
    public_key: Path | None = None
    api_token: str | None = field(default=None, repr=False)


def configured(config_path: Path | None) -> Configured:
    """Read ``-c CONFIG`` (or the default config when it exists); UserError if it is bad."""
    if config_path is None:
        if not DEFAULT_CONFIG.exists():
            return Configured()
        config_path = DEFAULT_CONFIG
    from gateway.config_load import load_config  # noqa: PLC0415

    try:
        config = load_config(config_path, broker_secrets=False)
    except ConfigError as exc:
        raise UserError(f"-c: {exc}") from None
    return Configured(
        store=config.store.path,
        api_url=config.api.url if config.api.enabled else None,
        public_key=config.gateway.key_file.with_suffix(".pub"),
        api_token=config.api.token,
    )


def store_options(*, api: bool) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Add -c/--config and --store (and --api when the command can use the read API)."""
    options = [
        click.option(
            "-c",
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The gateway configuration, for the store path, the gateway's public key"
            + (" and the read API address" if api else "")
            + " (default: config/gateway.toml when it exists).",
        ),
        click.option(
            "--store",
            "store_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The DuckDB store file (overrides the config)"
            + ("." if api else "; a stopped gateway's, or a copy."),
        ),
    ]
    if api:
        options.append(
            click.option(
                "--api",
                "api_url",
                help="The running gateway's read API, http://HOST:PORT or unix:/PATH "
                f"(overrides the config; default {DEFAULT_API}).",
            )
        )

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate
