"""An asset's report: what its anchored readings say, computed only from proven readings.

:func:`build_report` exports the proof bundle for one asset (a shipment or a
component, optionally within a receive-time range), verifies it with the gateway's
public key, and computes every figure from the readings that verified, never from
the store's parsed columns: a report is as trustworthy as its proof. The figures:

- readings, span (sensor time), min/max/mean temperature;
- excursions outside the threshold band, time out of range and the worst excursion
  (``gateway.excursions``), mean kinetic temperature (``gateway.mkt``);
- for assets with location readings (shipments): distance travelled and stops
  (``gateway.route``);
- gaps in ``seq`` per device and kind (missing readings between those reported).

:func:`write_report` writes summary.json, proof.json (the bundle, verifiable with
``anchorgate verify``), temperature.png, route.png (shipments) and report.html.
docs/REPORTS.md explains every figure and its definition.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.excursions import Band, Excursion, Sample, find_excursions, union_ms, worst_excursion
from gateway.mkt import DEFAULT_ACTIVATION_ENERGY_J_PER_MOL, mean_kinetic_temperature
from gateway.proofs import export_bundle
from gateway.reader import Selection, StoreReader
from gateway.route import (
    DEFAULT_STOP_MIN_S,
    DEFAULT_STOP_RADIUS_M,
    Fix,
    Stop,
    distance_m,
    find_stops,
)
from gateway.verify_report import iso_ms, iso_ns, reading_row
from ledger import PublicKey, dumps_bundle, verify_bundle

REPORT_FORMAT = "anchorgate-report/1"
COLD_CHAIN_BAND = Band(2.0, 8.0)  # shipments: the usual refrigerated range
COMPONENT_BAND = Band(None, 85.0)  # thermal components: a die-cast heat sink's limit


class ReportError(GatewayError):
    """The report cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What to report on and the thresholds to apply (``band`` None: the default)."""

    asset_id: str
    since_ns: int | None = None
    until_ns: int | None = None
    band: Band | None = None
    activation_energy_j_per_mol: float = DEFAULT_ACTIVATION_ENERGY_J_PER_MOL
    stop_radius_m: float = DEFAULT_STOP_RADIUS_M
    stop_min_s: float = DEFAULT_STOP_MIN_S


@dataclass(frozen=True)
class AssetReport:
    """The summary (JSON-ready), the verified bundle and the series the plots need."""

    summary: dict[str, Any]
    bundle: dict[str, Any]
    band: Band
    temperatures: dict[str, list[Sample]] = field(default_factory=dict)
    route: list[Fix] = field(default_factory=list)
    excursions: list[Excursion] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)


def default_band(has_location: bool) -> tuple[Band, str]:
    """The band used when none is given, and why."""
    if has_location:
        return COLD_CHAIN_BAND, "default for shipments: the asset has location readings"
    return COMPONENT_BAND, "default for components: the asset has no location readings"


def build_report(reader: StoreReader, key: PublicKey, options: ReportOptions) -> AssetReport:
    """Export and verify the asset's proof bundle, then compute the report from it."""
    selection = Selection(
        asset_id=options.asset_id, since_ns=options.since_ns, until_ns=options.until_ns
    )
    exported = export_bundle(reader, selection)  # NothingToExport, ExportError
    verification = verify_bundle(exported.bundle, key)
    failure = verification.failure
    if failure is not None or verification.head_hash is None or verification.head is None:
        detail = "no check ran" if failure is None else f"{failure.name}: {failure.detail}"
        raise ReportError(
            f"the proof bundle for {options.asset_id!r} does not verify with this key "
            f"({detail}); check --key, then run 'anchorgate audit'"
        )
    rows = [reading_row(item) for item in verification.readings]
    where, params = selection.where()
    counted = reader.one(f"SELECT count(*) FROM readings WHERE {where}", params)
    stored = 0 if counted is None else int(counted[0])
    if stored != len(rows):
        raise ReportError(
            f"the store holds {stored} readings of {options.asset_id!r}, the proof only "
            f"{len(rows)}; run 'anchorgate audit'"
        )
    anchoring = {
        "all_anchored": True,
        "verified_readings": len(rows),
        "blocks": {
            "first": min(r["block_height"] for r in rows),
            "last": max(r["block_height"] for r in rows),
        },
        "head": {"height": verification.head.height, "hash": verification.head_hash.hex()},
        "gateway_id": verification.head.gateway_id,
        "key_id": verification.head.key_id.hex(),
        "proof": "proof.json",
    }
    return analyse(rows, options, exported.bundle, anchoring)


def _by_device(rows: Sequence[Mapping[str, Any]], kind: str) -> dict[str, list[Mapping[str, Any]]]:
    series: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("kind") == kind:
            series[str(row["device_id"])].append(row)
    for values in series.values():
        values.sort(key=lambda r: (r["ts"], r.get("seq") or 0))
    return dict(sorted(series.items()))


def _excursion_json(e: Excursion) -> dict[str, Any]:
    return {
        "device_id": e.device_id,
        "start": iso_ms(e.start_ms),
        "end": iso_ms(e.end_ms),
        "duration_s": e.duration_ms / 1000,
        "readings": e.readings,
        "side": e.side,
        "peak_c": e.peak_c,
        "peak_deviation_c": round(e.peak_deviation_c, 6),
        "ongoing": e.ongoing,
    }


def _temperature_json(
    samples: Sequence[Sample], excursions: Sequence[Excursion], activation: float
) -> dict[str, Any]:
    values = [s.celsius for s in samples]
    worst = worst_excursion(excursions)
    out_ms = union_ms((e.start_ms, e.end_ms) for e in excursions)
    span_ms = max(s.t_ms for s in samples) - min(s.t_ms for s in samples)
    return {
        "readings": len(values),
        "min_c": min(values),
        "max_c": max(values),
        "mean_c": round(sum(values) / len(values), 6),
        "mkt_c": round(mean_kinetic_temperature(values, activation), 6),
        "time_out_of_range_s": out_ms / 1000,
        # Of the time from the first to the last temperature reading.
        "share_out_of_range": round(out_ms / span_ms, 6) if span_ms else 0.0,
        "excursions": len(excursions),
        "worst_excursion": None if worst is None else _excursion_json(worst),
    }


def seq_gaps(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Missing seq ranges per device and kind (over all kinds for a shared counter)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    kinds: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if type(row.get("seq")) is int:
            groups[(str(row["device_id"]), str(row["kind"]))].append(row)
            kinds[str(row["device_id"])].add(str(row["kind"]))
    merged: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for device, device_kinds in kinds.items():
        every = [r for k in device_kinds for r in groups[(device, k)]]
        if len(device_kinds) > 1 and len({r["seq"] for r in every}) == len(every):
            merged[(device, "all kinds")] = every  # one counter across kinds
        else:
            merged.update({(device, k): groups[(device, k)] for k in device_kinds})
    gaps = []
    for (device, kind), group in sorted(merged.items()):
        ordered = sorted(group, key=lambda r: r["seq"])
        for before, after in itertools.pairwise(ordered):
            if after["seq"] - before["seq"] > 1:
                gaps.append(
                    {
                        "device_id": device,
                        "kind": kind,
                        "first_missing": before["seq"] + 1,
                        "last_missing": after["seq"] - 1,
                        "missing": after["seq"] - before["seq"] - 1,
                        "after": iso_ms(before["ts"]),
                        "before": iso_ms(after["ts"]),
                        "duration_s": (after["ts"] - before["ts"]) / 1000,
                    }
                )
    return gaps


def analyse(
    rows: Sequence[Mapping[str, Any]],
    options: ReportOptions,
    bundle: dict[str, Any],
    anchoring: dict[str, Any],
) -> AssetReport:
    """The report over verified reading rows (as ``gateway.verify_report.reading_row``)."""
    rows = [r for r in rows if "payload_error" not in r]
    temperature_rows = _by_device(rows, "temperature")
    location_rows = _by_device(rows, "location")
    kind = "shipment" if location_rows else "component"
    if options.band is not None:
        band, band_source = options.band, "given with --min-c/--max-c"
    else:
        band, band_source = default_band(bool(location_rows))
    temperatures = {
        device: [Sample(int(r["ts"]), float(r["celsius"])) for r in values]
        for device, values in temperature_rows.items()
    }
    excursions_by_device = {
        device: find_excursions(samples, band, device) for device, samples in temperatures.items()
    }
    excursions = sorted(
        (e for found in excursions_by_device.values() for e in found), key=lambda e: e.start_ms
    )
    all_samples = [s for samples in temperatures.values() for s in samples]
    activation = options.activation_energy_j_per_mol
    temperature: dict[str, Any] | None = None
    if all_samples:
        temperature = _temperature_json(all_samples, excursions, activation)
        # MKT assumes one series sampled at equal intervals: with several sensors the
        # asset's MKT is the highest of theirs (the conservative figure).
        temperature["mkt_c"] = max(
            round(mean_kinetic_temperature([s.celsius for s in samples], activation), 6)
            for samples in temperatures.values()
        )
        temperature["devices"] = {
            device: _temperature_json(samples, excursions_by_device[device], activation)
            for device, samples in temperatures.items()
        }
        temperature["excursion_list"] = [_excursion_json(e) for e in excursions]

    route: list[Fix] = []
    stops: list[Stop] = []
    route_json: dict[str, Any] | None = None
    if location_rows:
        # The route is the tracker with the most fixes; others are listed, not summed.
        tracker = max(location_rows, key=lambda d: len(location_rows[d]))
        route = [
            Fix(int(r["ts"]), float(r["lat"]), float(r["lon"])) for r in location_rows[tracker]
        ]
        stops = find_stops(route, options.stop_radius_m, options.stop_min_s)
        route_json = {
            "device_id": tracker,
            "fixes": len(route),
            "distance_km": round(distance_m(route, stops) / 1000, 6),
            "stop_radius_m": options.stop_radius_m,
            "stop_min_s": options.stop_min_s,
            "stops": [
                {
                    "start": iso_ms(s.start_ms),
                    "end": iso_ms(s.end_ms),
                    "duration_s": s.duration_ms / 1000,
                    "lat": round(s.lat, 7),
                    "lon": round(s.lon, 7),
                }
                for s in stops
            ],
            "other_devices": {d: len(v) for d, v in location_rows.items() if d != tracker},
        }

    times = [int(r["ts"]) for r in rows]
    received = [int(r["received_ns"]) for r in rows]
    summary: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "asset_id": options.asset_id,
        "kind": kind,
        "selection": {
            "from": None if options.since_ns is None else iso_ns(options.since_ns),
            "to": None if options.until_ns is None else iso_ns(options.until_ns),
            "by": "gateway receive time",
        },
        "readings": {
            "total": len(rows),
            "temperature": len(all_samples),
            "location": sum(len(v) for v in location_rows.values()),
            "devices": sorted({str(r["device_id"]) for r in rows}),
        },
        "span": {
            "first": iso_ms(min(times)) if times else None,
            "last": iso_ms(max(times)) if times else None,
            "seconds": (max(times) - min(times)) / 1000 if times else 0.0,
            "received_first": iso_ns(min(received)) if received else None,
            "received_last": iso_ns(max(received)) if received else None,
        },
        "band": {"min_c": band.min_c, "max_c": band.max_c, "source": band_source},
        "mkt_activation_energy_kj_per_mol": activation / 1000,
        "temperature": temperature,
        "route": route_json,
        "seq_gaps": seq_gaps(rows),
        "anchoring": anchoring,
    }
    return AssetReport(
        summary=summary,
        bundle=bundle,
        band=band,
        temperatures=temperatures,
        route=route,
        excursions=excursions,
        stops=stops,
    )


def write_report(report: AssetReport, directory: Path) -> dict[str, Path]:
    """Write the report's files into ``directory`` (created if needed); returns them."""
    from gateway.report_html import render_html  # noqa: PLC0415
    from gateway.report_plots import plot_route, plot_temperature  # noqa: PLC0415

    try:
        directory.mkdir(parents=True, exist_ok=True)
        files = {"summary": directory / "summary.json", "proof": directory / "proof.json"}
        files["proof"].write_bytes(dumps_bundle(report.bundle))
        if report.temperatures:
            files["temperature_plot"] = directory / "temperature.png"
            plot_temperature(report, files["temperature_plot"])
        if report.route:
            files["route_plot"] = directory / "route.png"
            plot_route(report, files["route_plot"])
        files["html"] = directory / "report.html"
        report.summary["files"] = {name: path.name for name, path in files.items()}
        files["summary"].write_text(json.dumps(report.summary, indent=1) + "\n")
        files["html"].write_text(render_html(report, files))
    except OSError as exc:
        raise ReportError(f"cannot write the report to {directory}: {exc.strerror}") from None
    return files
