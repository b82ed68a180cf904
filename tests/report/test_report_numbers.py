"""anchorgate report on a store whose readings were made by hand: every figure is known.

The expected values are worked out here from the constants in report_store.py, not by
calling the report's own helpers.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from report_store import (
    HS_CELSIUS,
    MINUTE_MS,
    REEFER_SEQS,
    T0_MS,
    ReportStore,
    make_report_store,
    reefer_celsius,
)

from gateway.cli import main
from gateway.excursions import Band
from gateway.reader import StoreReader
from gateway.report import ReportOptions, build_report
from ledger import PublicKey, verify_bundle

EARTH_RADIUS_KM = 6371.0088


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def mkt_reference(celsius: list[float]) -> float:
    kelvin = np.asarray(celsius) + 273.15
    return float(10_000.0 / -np.log(np.mean(np.exp(-10_000.0 / kelvin))) - 273.15)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> ReportStore:
    return make_report_store(tmp_path_factory.mktemp("report-store"))


def run_report(made: ReportStore, out: Path, *extra: str) -> dict[str, Any]:
    store = ["--store", str(made.path), "--key", str(made.public_key_path)]
    code = main(["report", *store, "-o", str(out), *extra])
    assert code == 0
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


@pytest.fixture(scope="module")
def shipment(made: ReportStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ship-1")
    run_report(made, out, "--asset", "SHIP-1")
    return out


@pytest.fixture(scope="module")
def component(made: ReportStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hs-1")
    run_report(made, out, "--asset", "HS-1")
    return out


def summary_of(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "summary.json").read_text())
    return data


def options_report(made: ReportStore, options: ReportOptions) -> dict[str, Any]:
    with StoreReader.open(made.path) as reader:
        return build_report(reader, PublicKey.load(made.public_key_path), options).summary


def test_shipment_temperature_figures(shipment: Path) -> None:
    s = summary_of(shipment)
    temps = [reefer_celsius(seq) for seq in REEFER_SEQS]
    assert s["kind"] == "shipment"
    assert s["readings"] == {
        "total": 48,
        "temperature": 28,
        "location": 20,
        "devices": ["reefer-9", "tracker-9"],
    }
    assert s["span"]["first"] == iso(T0_MS)
    assert s["span"]["last"] == iso(T0_MS + 29 * MINUTE_MS)
    assert s["span"]["seconds"] == 29 * 60
    assert s["band"]["min_c"] == 2.0
    assert s["band"]["max_c"] == 8.0
    t = s["temperature"]
    assert (t["min_c"], t["max_c"]) == (1.0, 10.5)
    assert t["mean_c"] == pytest.approx(sum(temps) / len(temps), abs=1e-6)
    assert t["mkt_c"] == pytest.approx(mkt_reference(temps), abs=1e-6)
    assert s["mkt_activation_energy_kj_per_mol"] == 83.144
    # Above 8 °C from seq 5 to seq 8 (3 min), below 2 °C from seq 20 to 22 (2 min), and
    # the last reading (seq 29) is above again: an excursion of no length yet.
    assert t["excursions"] == 3
    assert t["time_out_of_range_s"] == 300
    assert t["share_out_of_range"] == pytest.approx(300 / (29 * 60), abs=1e-6)
    worst = t["worst_excursion"]
    assert worst["start"] == iso(T0_MS + 5 * MINUTE_MS)
    assert worst["end"] == iso(T0_MS + 8 * MINUTE_MS)
    assert (worst["duration_s"], worst["peak_c"], worst["peak_deviation_c"]) == (180, 10.5, 2.5)
    assert [(e["side"], e["duration_s"], e["ongoing"]) for e in t["excursion_list"]] == [
        ("above", 180, False),
        ("below", 120, False),
        ("above", 0, True),
    ]


def test_shipment_route_and_gaps(shipment: Path) -> None:
    s = summary_of(shipment)
    route = s["route"]
    # 0.12 degrees north along a meridian; the jitter while standing is not travel.
    assert route["distance_km"] == pytest.approx(EARTH_RADIUS_KM * math.radians(0.12), abs=1e-6)
    assert route["fixes"] == 20
    assert len(route["stops"]) == 1
    stop = route["stops"][0]
    assert stop["start"] == iso(T0_MS + 8 * MINUTE_MS + 1)
    assert stop["duration_s"] == 7 * 60
    assert (stop["lat"], stop["lon"]) == pytest.approx((52.08, 13.0))
    assert s["seq_gaps"] == [
        {
            "device_id": "reefer-9",
            "kind": "temperature",
            "first_missing": 10,
            "last_missing": 11,
            "missing": 2,
            "after": iso(T0_MS + 9 * MINUTE_MS),
            "before": iso(T0_MS + 12 * MINUTE_MS),
            "duration_s": 180,
        }
    ]


def test_shipment_is_anchored_and_its_proof_verifies(made: ReportStore, shipment: Path) -> None:
    anchoring = summary_of(shipment)["anchoring"]
    with StoreReader.open(made.path) as reader:
        status = reader.status()
        heights = reader.one(
            "SELECT min(block_height), max(block_height) FROM readings WHERE asset_id = 'SHIP-1'"
        )
    assert heights is not None
    assert anchoring["all_anchored"] is True
    assert anchoring["verified_readings"] == 48
    assert anchoring["blocks"] == {"first": heights[0], "last": heights[1]}
    assert anchoring["head"] == {"height": status["height"], "hash": status["head_hash"]}
    report = verify_bundle((shipment / "proof.json").read_bytes(), made.key.public_key)
    assert report.valid
    assert len(report.readings) == 48


def test_shipment_pictures_and_page(shipment: Path) -> None:
    for name, size in (("temperature.png", (1000, 450)), ("route.png", (700, 700))):
        with Image.open(shipment / name) as image:
            assert image.format == "PNG"
            assert image.size == size
            image.verify()
    page = (shipment / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert "http://" not in page
    assert "https://" not in page
    assert "SHIP-1" in page
    assert "All 48 readings in this report are anchored" in page


def test_component_has_an_upper_limit_and_no_route(component: Path) -> None:
    s = summary_of(component)
    assert s["kind"] == "component"
    assert (s["band"]["min_c"], s["band"]["max_c"]) == (None, 85.0)
    t = s["temperature"]
    assert t["readings"] == len(HS_CELSIUS)
    assert t["mean_c"] == pytest.approx(sum(HS_CELSIUS) / len(HS_CELSIUS), abs=1e-6)
    # 86, 90 and 85.5 °C at 30, 40 and 50 s; back to 80 at 60 s.
    assert t["time_out_of_range_s"] == 30
    worst = t["worst_excursion"]
    assert (worst["peak_c"], worst["peak_deviation_c"], worst["duration_s"]) == (90, 5, 30)
    assert s["route"] is None
    assert s["seq_gaps"] == []
    assert not (component / "route.png").exists()
    with Image.open(component / "temperature.png") as image:
        image.verify()
    assert (component / "report.html").read_text().count("data:image/png") == 1


def test_given_band_replaces_the_default(made: ReportStore) -> None:
    s = options_report(made, ReportOptions("SHIP-1", band=Band(0.0, 9.6)))
    # Only seq 6 (10.5 °C) is outside, for one minute; 9.5 °C at the end is inside.
    assert s["temperature"]["time_out_of_range_s"] == 60
    assert s["temperature"]["excursions"] == 1
    assert s["band"]["source"] == "given with --min-c/--max-c"


def test_receive_time_range_selects_readings_and_proof(made: ReportStore, tmp_path: Path) -> None:
    since = datetime.fromtimestamp((T0_MS + 10 * MINUTE_MS) / 1000, UTC).isoformat()
    until = datetime.fromtimestamp((T0_MS + 20 * MINUTE_MS) / 1000, UTC).isoformat()
    s = run_report(made, tmp_path, "--asset", "SHIP-1", "--from", since, "--to", until)
    # Received half a second after sensor time: reefer seq 12..19, tracker fixes 10..19.
    assert s["readings"]["temperature"] == 8
    assert s["readings"]["location"] == 10
    assert s["temperature"]["excursions"] == 0
    assert s["temperature"]["mkt_c"] == pytest.approx(5.0, abs=1e-9)
    assert s["seq_gaps"] == []
    bundle = json.loads((tmp_path / "proof.json").read_text())
    assert len(bundle["readings"]) == 18


def test_other_activation_energy(made: ReportStore) -> None:
    s = options_report(made, ReportOptions("HS-1", activation_energy_j_per_mol=60_000.0))
    kelvin = np.asarray(HS_CELSIUS) + 273.15
    ratio = 60_000.0 / 8.3144
    expected = ratio / -np.log(np.mean(np.exp(-ratio / kelvin))) - 273.15
    assert s["temperature"]["mkt_c"] == pytest.approx(float(expected), abs=1e-6)
    assert s["mkt_activation_energy_kj_per_mol"] == 60.0


@pytest.mark.parametrize(
    ("asset", "pictures"),
    [
        pytest.param("LONE-1", ["temperature.png"], id="one-reading"),
        pytest.param("TRK-1", ["route.png"], id="one-fix-no-temperature"),
    ],
)
def test_single_readings_still_make_a_report(
    made: ReportStore, tmp_path: Path, asset: str, pictures: list[str]
) -> None:
    s = run_report(made, tmp_path, "--asset", asset)
    assert s["readings"]["total"] == 1
    assert s["span"]["seconds"] == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == pictures
    for name in pictures:
        with Image.open(tmp_path / name) as image:
            image.verify()
    if asset == "LONE-1":
        assert s["temperature"]["mkt_c"] == pytest.approx(20.0, abs=1e-9)
        assert s["temperature"]["time_out_of_range_s"] == 0
    else:
        assert s["temperature"] is None
        assert s["route"]["distance_km"] == 0
