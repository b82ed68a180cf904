"""The report of a seeded simulator run agrees with what the simulator published.

A scenario like the demo's (three reefers on a hot day, one reefer failing, doors
opened on two, heat sinks, bad messages and duplicates among the genuine ones; written
out here so that edits to config/scenarios/demo.toml cannot move these answers) runs
offline, without a broker; its messages go through the gateway's decoder and anchorer
into a real store. The expected figures are recomputed here from the readings the
gateway kept, with plain code written for this test.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.anchor import Accepted, Anchorer, Decoded, Rejected
from gateway.config import LimitsSection
from gateway.decode import Decoder, detect_format
from gateway.errors import DecodeError
from gateway.reader import StoreReader
from gateway.report import ReportOptions, build_report, write_report
from gateway.store import Store
from ledger import SigningKey
from simulators.fleet import Outgoing, Simulation
from simulators.manifest import Manifest
from simulators.runner import new_manifest
from simulators.scenario import scenario_from_mapping

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SCENARIO: dict[str, Any] = {
    "name": "report-test",
    "seed": 42,
    "duration": 30,
    "time_scale": 60,
    "format": "json",
    "groups": [
        {"name": "heatsink", "model": "heat_sink", "count": 2, "interval": 1.0},
        {
            "name": "reefer",
            "model": "shipment",
            "count": 3,
            "interval": 2.0,
            "route": "rotterdam-munich",
            "profile": "cold_chain",
            "setpoint_c": 4.0,
            "ambient_c": 30.0,
            "clock_skew_ms": 1500,
        },
    ],
    "events": [
        {"kind": "reefer_failure", "group": "reefer", "at": 5},
        {"kind": "door_open", "group": "reefer", "devices": 2, "at": 20, "duration": 5},
    ],
    "faults": [
        {"kind": "malformed_json", "start": 2, "every": 10},
        {"kind": "missing_fields", "start": 5, "every": 10},
        {"kind": "out_of_range", "start": 7, "every": 10},
        {"kind": "future_clock", "start": 10, "every": 15},
        {"kind": "duplicate", "probability": 0.05},
        {"kind": "replay", "group": "heatsink", "start": 15, "every": 10, "age": 10},
    ],
}


class Run:
    def __init__(self, directory: Path) -> None:
        scenario = scenario_from_mapping(SCENARIO, "report test", Path("."))
        self.manifest: Manifest = new_manifest(scenario)
        simulation = Simulation(
            scenario,
            rng=random.Random(scenario.seed),
            ts_ms=lambda due: EPOCH_MS + round(due * 1000),
            manifest=self.manifest,
        )
        messages: list[Outgoing] = []
        while batch := simulation.take(scenario.duration_s, 10_000):
            messages += [a for a in batch if isinstance(a, Outgoing)]
        self.key = SigningKey.from_seed(bytes(range(2, 34)))
        self.path = directory / "gateway.duckdb"
        decoder = Decoder(LimitsSection())
        # Valid readings by (device, kind, seq or digest), first copy only, as the gateway
        # keeps them.
        self.genuine: dict[tuple[str, str, str], dict[str, Any]] = {}
        items: list[Decoded] = []
        for message in messages:
            # The gateway receives each message half a second after it is due.
            at = (EPOCH_MS + round(message.due * 1000) + 500) * 1_000_000
            try:
                reading = decoder.decode(message.topic, message.payload, at)
            except DecodeError as exc:
                items.append(Rejected(message.topic, message.payload, at, exc.field, str(exc)))
                continue
            fmt = detect_format(message.payload)
            items.append(Accepted(message.topic, message.payload, at, reading, fmt))
            # A reading without seq (a missing_fields fault) is valid: kept once by digest.
            identity = (
                str(reading.seq)
                if reading.seq is not None
                else "#" + hashlib.sha256(message.payload).hexdigest()
            )
            key = (reading.device_id, reading.kind, identity)
            self.genuine.setdefault(key, reading.to_payload())
        last = max(item.received_ns for item in items)
        with Store.open(self.path) as store:
            anchorer = Anchorer(
                store, self.key, "gw-sim", duplicate_window_ns=10**13, clock=lambda: last + 1
            )
            for start in range(0, len(items), 500):
                anchorer.commit(items[start : start + 500])

    def expected(self, asset: str, kind: str) -> list[dict[str, Any]]:
        rows = [
            {"device_id": device, **fields}
            for (device, k, _), fields in self.genuine.items()
            if k == kind and fields.get("asset_id") == asset
        ]
        return sorted(rows, key=lambda r: (r["ts"], r.get("seq", -1)))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(tmp_path_factory.mktemp("simulated"))


def reefers(run: Run) -> list[str]:
    return sorted(
        record.asset_id for record in run.manifest.devices.values() if record.model == "shipment"
    )


def report_of(run: Run, asset: str) -> dict[str, Any]:
    with StoreReader.open(run.path) as reader:
        return build_report(reader, run.key.public_key, ReportOptions(asset)).summary


def test_reefer_reports_match_the_published_readings(run: Run) -> None:
    assert len(reefers(run)) == 3
    hit = {e["device_id"] for e in run.manifest.events}
    assert hit == {"reefer-00000-trk", "reefer-00001-trk"}
    assert run.manifest.faults["duplicate"] > 0
    with StoreReader.open(run.path) as reader:
        assert reader.status()["rejects"] > 0
    for asset in reefers(run):
        s = report_of(run, asset)
        temps = run.expected(asset, "temperature")
        fixes = run.expected(asset, "location")
        assert s["kind"] == "shipment"
        assert s["readings"]["temperature"] == len(temps)
        assert s["readings"]["location"] == len(fixes)
        values = [r["celsius"] for r in temps]
        t = s["temperature"]
        assert (t["min_c"], t["max_c"]) == (min(values), max(values))
        assert t["mean_c"] == pytest.approx(float(np.mean(values)), abs=1e-6)
        kelvin = np.asarray(values) + 273.15
        mkt = 10_000 / -np.log(np.mean(np.exp(-10_000 / kelvin))) - 273.15
        assert t["mkt_c"] == pytest.approx(float(mkt), abs=1e-6)
        # Time out of range: each reading outside 2..8 °C stands until the next one.
        outside = sum(
            b["ts"] - a["ts"]
            for a, b in itertools.pairwise(temps)
            if not 2.0 <= a["celsius"] <= 8.0
        )
        assert t["time_out_of_range_s"] == pytest.approx(outside / 1000)
        # On a hot day a reefer leaves the band (upwards) only after its reefer failed or
        # its door was opened (device clocks are off by up to 1.5 s); the others hold.
        events = [
            e["at"]
            for e in run.manifest.events
            if e["kind"] in ("reefer_failure", "door_open") and e["device_id"] == f"{asset}-trk"
        ]
        if events:
            assert t["excursions"] >= 1
            assert {e["side"] for e in t["excursion_list"]} == {"above"}
            first = datetime.fromisoformat(t["excursion_list"][0]["start"])
            assert first.timestamp() * 1000 >= EPOCH_MS + min(events) * 1000 - 1500
        else:
            assert t["excursions"] == 0
        assert s["anchoring"]["all_anchored"] is True
        assert s["anchoring"]["verified_readings"] == len(temps) + len(fixes)
        assert s["route"]["fixes"] == len(fixes)
        assert s["route"]["distance_km"] > 0


def test_components_report_without_a_route_and_plots_draw(run: Run, tmp_path: Path) -> None:
    components = sorted(r.asset_id for r in run.manifest.devices.values() if r.model != "shipment")
    with StoreReader.open(run.path) as reader:
        made = build_report(reader, run.key.public_key, ReportOptions(components[0]))
    assert made.summary["kind"] == "component"
    assert made.summary["route"] is None
    files = write_report(made, tmp_path / "component")
    assert files["temperature_plot"].stat().st_size > 10_000
    with StoreReader.open(run.path) as reader:
        shipment = build_report(reader, run.key.public_key, ReportOptions(reefers(run)[0]))
    files = write_report(shipment, tmp_path / "shipment")
    assert files["route_plot"].stat().st_size > 10_000
