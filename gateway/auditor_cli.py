"""The auditor's commands: ``export``, ``verify``, ``audit`` and ``status``.

Each parses, makes one library call and prints. ``export`` and ``status`` open the
store file directly when no gateway holds it, and otherwise ask the running
gateway's read API (saying so on stderr). ``verify`` needs no store and no network.
Exit codes: 0 valid / done, 1 a check failed, 2 a usage or input error.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from gateway.cli_errors import EXIT_FAILED, UserError
from gateway.cli_store import DEFAULT_API, configured, store_options
from gateway.errors import GatewayError
from gateway.reader import (
    READ_MEMORY_LIMIT,
    ReadingRef,
    Selection,
    StoreLockedError,
    StoreReader,
)

TOKEN_ENV = "ANCHORGATE_API_TOKEN"


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """A running gateway's read API, and the bearer token it wants (if any)."""

    url: str
    token: str | None = field(default=None, repr=False)


@contextmanager
def _reader_or_api(
    config_path: Path | None, store_path: Path | None, api_url: str | None
) -> Iterator[StoreReader | ApiTarget]:
    """A reader on the store file, or the read API when a running gateway holds it.

    The API's token is the configuration's (``[api] token_env`` / ``token_file``), or
    else the environment variable ANCHORGATE_API_TOKEN.
    """
    config = configured(config_path)
    path = store_path or config.store
    url = api_url or config.api_url or DEFAULT_API
    api = ApiTarget(url, config.api_token or os.environ.get(TOKEN_ENV) or None)
    if path is None:
        raise UserError("no store: give --store FILE or -c CONFIG")
    try:
        reader = StoreReader.open(path)
    except StoreLockedError:
        click.echo(f"{path} is held by the running gateway; asking its read API at {url}", err=True)
        served = _api_json(api, "/status", []).get("store")
        if served is not None and Path(served) != path.resolve():
            raise UserError(
                f"the read API at {url} serves {served}, not {path.resolve()}: is another "
                "gateway on that port? Set [api] in the config or give --api"
            ) from None
        yield api
        return
    except GatewayError as exc:
        raise UserError(str(exc)) from None
    with reader:
        yield reader


def _api_get(api: ApiTarget, endpoint: str, params: list[tuple[str, str]]) -> tuple[int, bytes]:
    url = api.url
    headers = {"Authorization": f"Bearer {api.token}"} if api.token else {}

    async def fetch() -> tuple[int, bytes]:
        connector: aiohttp.BaseConnector | None = None
        base = url
        if url.startswith("unix:"):
            connector = aiohttp.UnixConnector(path=url[len("unix:") :])
            base = "http://localhost"
        timeout = aiohttp.ClientTimeout(total=600)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(base.rstrip("/") + endpoint, params=params, headers=headers) as response,
        ):
            return response.status, await response.read()

    try:
        return asyncio.run(fetch())
    except (aiohttp.ClientError, OSError) as exc:
        raise UserError(f"cannot reach the gateway's read API at {url}: {exc}") from None


def _api_json(api: ApiTarget, endpoint: str, params: list[tuple[str, str]]) -> Any:
    status, body = _api_get(api, endpoint, params)
    try:
        data = json.loads(body)
    except ValueError:
        raise UserError(f"the read API answered {status} with something that is not JSON") from None
    if status != 200:
        raise UserError(f"read API: {data.get('error', status)}")
    return data


@click.command()
@click.option("--device", help="Readings of this device id.")
@click.option("--asset", help="Readings of this asset (shipment or component) id.")
@click.option("--from", "since", help="Received at or after (ISO 8601, UTC if no offset).")
@click.option("--to", "until", help="Received before (ISO 8601, UTC if no offset).")
@click.option("--id", "ids", multiple=True, help="A reading id HEIGHT:INDEX (repeatable).")
@click.option("--since-head", help="Also prove that today's head extends this older head (hex).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bundle here (default: stdout).",
)
@store_options(api=True)
def export(
    device: str | None,
    asset: str | None,
    since: str | None,
    until: str | None,
    ids: tuple[str, ...],
    since_head: str | None,
    output: Path | None,
    config_path: Path | None,
    store_path: Path | None,
    api_url: str | None,
) -> None:
    """Export a proof bundle for the selected readings.

    Only the selected readings are disclosed; the others appear as hashes only.

    \b
    Examples:
      anchorgate export --asset SHIP-1 -o ship-1.proof.json
      anchorgate export --device reefer-7 --from 2026-11-01 --to 2026-11-02 -o day.json
      anchorgate export --id 42:7 --since-head 5f3a...e1 --store data/anchorgate.duckdb
    """
    from gateway.proofs import ExportError, export_bundle  # noqa: PLC0415
    from gateway.readapi import parse_head, parse_time  # noqa: PLC0415
    from ledger import dumps_bundle  # noqa: PLC0415

    try:
        selection = Selection(
            device_id=device,
            asset_id=asset,
            since_ns=parse_time(since, "--from") if since else None,
            until_ns=parse_time(until, "--to") if until else None,
            reading_ids=tuple(ReadingRef.parse(i) for i in ids),
        )
        head = parse_head(since_head, "--since-head") if since_head else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with _reader_or_api(config_path, store_path, api_url) as source:
        if isinstance(source, ApiTarget):
            params = [
                (name, value)
                for name, value in (
                    ("device", device),
                    ("asset", asset),
                    ("from", since),
                    ("to", until),
                    ("since_head", since_head),
                )
                if value
            ] + [("id", i) for i in ids]
            bundle = _api_json(source, "/export", params)
        else:
            try:
                bundle = export_bundle(source, selection, since_head=head).bundle
            except ExportError as exc:
                raise UserError(str(exc)) from None
    data = dumps_bundle(bundle)
    count, blocks = len(bundle["readings"]), len(bundle["blocks"]) + 1
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(
        f"exported {count} reading(s) from up to {blocks} block(s) under head "
        f"{bundle['head']['height']}" + (f" to {output}" if output else ""),
        err=True,
    )


_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_MEMORY_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
_MEMORY_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIN_AUDIT_MEMORY = 64e6  # below this DuckDB cannot group the store's leaf hashes


def _memory_limit(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A DuckDB memory size such as "256MB", at least 64 MB."""
    match = _MEMORY.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a size like 256MB or 1GB")
    size = float(match[1]) * _MEMORY_UNITS[match[2].lower()]
    if size < MIN_AUDIT_MEMORY:
        raise click.BadParameter(f"{value!r} is less than 64MB, too little for DuckDB here")
    return f"{match[1]}{match[2]}"


@click.command()
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway's public key (default: the .pub beside the configured key file).",
)
@click.option("--head", "head_hex", help="A head hash seen earlier that must still be there.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=os.cpu_count() or 1,
    show_default="the number of CPUs",
    help="Processes that check ranges of blocks side by side (this one and N-1 more).",
)
@click.option(
    "--memory-limit",
    default=READ_MEMORY_LIMIT,
    show_default=True,
    callback=_memory_limit,
    help="DuckDB memory per process, e.g. 128MB or 1GB; the store's size does not matter.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@store_options(api=True)
def audit(
    key_path: Path | None,
    head_hex: str | None,
    workers: int,
    memory_limit: str,
    as_json: bool,
    config_path: Path | None,
    store_path: Path | None,
    api_url: str | None,
) -> None:
    """Re-verify the whole store: every reading, leaf, block, link and signature.

    Streams in bounded memory and lists every problem with its table, row, block
    and reason. Exit 1 when anything is wrong. The gateway must be stopped (or audit
    a copy of its store file).

    \b
    Example:
      anchorgate audit --store data/anchorgate.duckdb --key keys/gateway.pub
    """
    from gateway.audit_parallel import audit_file  # noqa: PLC0415
    from gateway.readapi import parse_head  # noqa: PLC0415
    from ledger import LedgerError, PublicKey  # noqa: PLC0415

    config = configured(config_path)
    key_path = key_path or config.public_key
    path = store_path or config.store
    if key_path is None:
        raise UserError("no key: give --key GATEWAY.pub")
    if path is None:
        raise UserError("no store: give --store FILE or -c CONFIG")
    try:
        key = PublicKey.load(key_path)
        trusted = parse_head(head_hex, "--head") if head_hex else None
    except (LedgerError, ValueError) as exc:
        raise UserError(str(exc)) from None
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("auditing blocks", total=None)
        try:
            report = audit_file(
                path,
                key,
                trusted_head=trusted,
                workers=workers,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                memory_limit=memory_limit,
            )
        except StoreLockedError:
            raise UserError(
                f"{path} is held by a running gateway: stop it first, or audit a copy of the file"
            ) from None
        except GatewayError as exc:
            raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1))
    else:
        out = Console(highlight=False)
        out.print(f"checked {report.blocks} block(s) and {report.readings} reading(s)")
        if report.head_hash is not None:
            out.print(f"head: block {report.head_height} {report.head_hash.hex()}")
        if report.ok:
            out.print("[bold green]OK[/]: no problem found")
        else:
            more = " (more not listed)" if report.truncated else ""
            out.print(f"[bold red]{len(report.problems)} problem(s){more}[/]:")
            for p in report.problems:
                block = "" if p.block is None else f" [block {p.block}]"
                out.print(f"- {p.table}, {p.row}{block}: {p.reason}")
    if not report.ok:
        raise click.exceptions.Exit(EXIT_FAILED)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_options(api=True)
def status(
    as_json: bool, config_path: Path | None, store_path: Path | None, api_url: str | None
) -> None:
    """Chain height, head, readings, rejects, duplicates, last block, ingest rate.

    \b
    Example:
      anchorgate status -c config/gateway.toml --json
    """
    from gateway.verify_report import iso_ns  # noqa: PLC0415

    with _reader_or_api(config_path, store_path, api_url) as source:
        result = (
            _api_json(source, "/status", []) if isinstance(source, ApiTarget) else source.status()
        )
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    live = result.get("live", {})
    click.echo(f"gateway:       {result.get('gateway_id')}")
    click.echo(f"height:        {result['height']}")
    click.echo(f"head:          {result['head_hash']}")
    last = result.get("last_block_ns")
    click.echo(f"last block:    {iso_ns(last) if last else '-'}")
    click.echo(f"readings:      {result['readings']}")
    click.echo(f"rejects:       {result['rejects']}")
    click.echo(f"duplicates:    {live.get('duplicates', '- (only while the gateway runs)')}")
    click.echo(f"ingest rate:   {result['ingest_rate_per_s']} readings/s (last minute of data)")
    if live:
        click.echo(f"state:         {live.get('state')}, queue depth {live.get('queue_depth')}")


COMMANDS = (export, audit, status)
