"""The analyst's commands: ``report`` (one asset, with plots) and ``export-parquet``.

Both read the store file directly, so the gateway must be stopped, or they are given
a copy of its store file: they read whole histories, which the gateway's read API is
not meant to serve. Each parses, makes one library call and prints.
Exit codes: 0 done, 1 a check failed (the proof does not verify), 2 a usage or input
error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import click

from gateway.cli_errors import EXIT_FAILED, UserError
from gateway.cli_store import Configured, configured, store_options
from gateway.errors import GatewayError
from gateway.reader import StoreLockedError, StoreReader

T = TypeVar("T")


@contextmanager
def _open_store(path: Path | None, command: str) -> Iterator[StoreReader]:
    if path is None:
        raise UserError("--store: no store given: give --store FILE or -c CONFIG")
    try:
        reader = StoreReader.open(path, threads=1)
    except StoreLockedError:
        raise UserError(
            f"--store: {path} is held by a running gateway: {command} reads the store file "
            "itself, so stop the gateway first, or give --store a copy of the file"
        ) from None
    except GatewayError as exc:
        raise UserError(f"--store: {exc}") from None
    with reader:
        yield reader


def _time_option(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    from gateway.readapi import parse_time  # noqa: PLC0415

    try:
        return parse_time(text, name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise UserError(f"{name}: {value} is not a finite number")
    return value


@click.command()
@click.option("--asset", "asset_id", required=True, help="The shipment or component id.")
@click.option("--from", "since", help="Readings received at or after (ISO 8601, UTC if no offset).")
@click.option("--to", "until", help="Readings received before (ISO 8601, UTC if no offset).")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The directory to write the report into (created if needed).",
)
@click.option(
    "--min-c",
    type=float,
    help="Lowest allowed temperature in °C. Default: 2 for shipments (assets with location "
    "readings), none for components. Giving --min-c or --max-c sets the whole band.",
)
@click.option(
    "--max-c",
    type=float,
    help="Highest allowed temperature in °C. Default: 8 for shipments, 85 for components.",
)
@click.option(
    "--activation-energy",
    "activation_kj",
    type=click.FloatRange(min=0, min_open=True),
    default=83.144,
    show_default=True,
    help="Activation energy ΔH in kJ/mol for the mean kinetic temperature (USP <1160>).",
)
@click.option(
    "--stop-radius",
    "stop_radius_m",
    type=click.FloatRange(min=0, min_open=True),
    default=100.0,
    show_default=True,
    help="A stop: fixes within this many metres...",
)
@click.option(
    "--stop-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="...for at least this many minutes.",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway's public key, to verify the proof (default: the .pub beside the "
    "configured key file).",
)
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@store_options(api=False)
def report(
    asset_id: str,
    since: str | None,
    until: str | None,
    output: Path,
    min_c: float | None,
    max_c: float | None,
    activation_kj: float,
    stop_radius_m: float,
    stop_minutes: float,
    key_path: Path | None,
    as_json: bool,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Report on one shipment or component: figures, plots, and its verified proof.

    Writes summary.json, proof.json, temperature.png, route.png (shipments) and
    report.html into the output directory. Every figure is computed from readings whose
    proof verified with the gateway's key; the gateway must be stopped (or give a copy
    of its store file). docs/REPORTS.md defines every figure.

    \b
    Examples:
      anchorgate report --asset SHIP-1 -o reports/ship-1 --store data/anchorgate.duckdb
      anchorgate report --asset HS-0042 --max-c 90 --from 2026-11-01 --to 2026-11-08 \\
          -o reports/hs-0042 -c config/gateway.toml
    """
    from gateway.excursions import Band  # noqa: PLC0415
    from gateway.proofs import ExportError, NothingToExport  # noqa: PLC0415
    from gateway.report import ReportError, ReportOptions, build_report, write_report  # noqa: PLC0415
    from ledger import LedgerError, PublicKey  # noqa: PLC0415

    if not asset_id.strip():
        raise UserError("--asset: give a shipment or component id")
    band = None
    if min_c is not None or max_c is not None:
        _finite(min_c, "--min-c")
        _finite(max_c, "--max-c")
        if min_c is not None and max_c is not None and min_c >= max_c:
            raise UserError(f"--min-c: {min_c:g} is not below --max-c {max_c:g}")
        band = Band(min_c, max_c)
    since_ns = _time_option(since, "--from")
    until_ns = _time_option(until, "--to")
    if since_ns is not None and until_ns is not None and since_ns >= until_ns:
        raise UserError(f"--from: {since} is not before --to {until}")
    config = Configured()
    if store_path is None or key_path is None:
        config = configured(config_path)
    key_path = key_path or config.public_key
    if key_path is None:
        raise UserError(
            "--key: no public key: give --key GATEWAY.pub (the report verifies its proof)"
        )
    try:
        key = PublicKey.load(key_path)
    except (LedgerError, OSError) as exc:
        raise UserError(f"--key: {exc}") from None
    options = ReportOptions(
        asset_id=asset_id,
        since_ns=since_ns,
        until_ns=until_ns,
        band=band,
        activation_energy_j_per_mol=activation_kj * 1000,
        stop_radius_m=stop_radius_m,
        stop_min_s=stop_minutes * 60,
    )
    with _open_store(store_path or config.store, "report") as reader:
        try:
            made = build_report(reader, key, options)
        except NothingToExport:
            within = " received in the --from/--to range" if since or until else ""
            raise UserError(f"--asset: no anchored reading of {asset_id!r}{within}") from None
        except ExportError as exc:
            raise UserError(f"--asset {asset_id}: {exc}") from None
        except ReportError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_FAILED) from None
        except GatewayError as exc:
            raise UserError(str(exc)) from None
    try:
        files = write_report(made, output)
    except ReportError as exc:
        raise UserError(f"-o: {exc}") from None
    if as_json:
        click.echo(json.dumps(made.summary, indent=1))
    anchoring = made.summary["anchoring"]
    click.echo(
        f"{made.summary['kind']} {asset_id}: {anchoring['verified_readings']} reading(s), all "
        f"anchored in blocks {anchoring['blocks']['first']}..{anchoring['blocks']['last']} "
        f"under head {anchoring['head']['height']} {anchoring['head']['hash']}; proof verified",
        err=True,
    )
    for path in files.values():
        click.echo(f"wrote {path}", err=True)


@click.command("export-parquet")
@click.option(
    "--since",
    help="Export the readings of blocks with readings received at or after this time "
    "(ISO 8601, UTC if no offset; default: all). Blocks are always exported from height 0.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The export directory (created if needed; later runs add only what is new).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@store_options(api=False)
def export_parquet(
    since: str | None,
    output: Path,
    as_json: bool,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Export readings (by day, Hive-style folders) and blocks as Parquet, idempotently.

    Running it again adds only blocks not yet in the directory (manifest.json records
    them), so it can be run again and again, for example on each backup copy of the
    store, to feed a central warehouse that DuckDB, Spark or Trino read. The gateway
    must be stopped, or give a copy of its store file.

    \b
    Examples:
      anchorgate export-parquet --since 2026-11-01 -o export/ --store data/anchorgate.duckdb
      duckdb -c "SELECT day, count(*) FROM read_parquet('export/readings/**/*.parquet',
          hive_partitioning = true) GROUP BY day"
    """
    from gateway.parquet_export import ParquetExportError  # noqa: PLC0415
    from gateway.parquet_export import export_parquet as run_export  # noqa: PLC0415

    since_ns = _time_option(since, "--since")
    path = store_path or configured(config_path).store
    with _open_store(path, "export-parquet") as reader:
        try:
            result = run_export(reader, output, since_ns)
        except ParquetExportError as exc:
            raise UserError(f"-o: {exc}") from None
        except GatewayError as exc:
            raise UserError(str(exc)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "blocks": [r.to_json() for r in result.blocks],
                    "readings": [r.to_json() for r in result.readings],
                    "reading_rows": result.reading_rows,
                    "files": [str(p) for p in result.files],
                    "head_height": result.head_height,
                },
                indent=1,
            )
        )
    if result.head_height is None:
        click.echo("the store has no blocks yet: nothing to export", err=True)
    elif not result.wrote_anything:
        click.echo(f"nothing new: {output} already holds everything asked for", err=True)
    else:
        blocks = ", ".join(f"{r.first}..{r.last}" for r in result.blocks) or "none new"
        readings = ", ".join(f"{r.first}..{r.last}" for r in result.readings) or "none new"
        click.echo(
            f"exported blocks {blocks}; readings of blocks {readings} ({result.reading_rows} "
            f"rows) in {len(result.files)} file(s) to {output}",
            err=True,
        )


COMMANDS = (report, export_parquet)
