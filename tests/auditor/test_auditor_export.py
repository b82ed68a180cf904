"""Export from a real store, verify offline: selections, disclosure, head extension."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from auditor_store import Made, make_store

from gateway.proofs import ExportError, export_bundle
from gateway.reader import ReadingRef, Selection, StoreReader
from gateway.verify_report import summarize
from ledger import Envelope, PublicKey, dumps_bundle, verify_bundle


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_store(tmp_path_factory.mktemp("store"))


def export(made: Made, selection: Selection, **kwargs: Any) -> dict[str, Any]:
    with StoreReader.open(made.path) as reader:
        return export_bundle(reader, selection, **kwargs).bundle


def verified(made: Made, bundle: dict[str, Any], head: bytes | None = None) -> dict[str, Any]:
    report = verify_bundle(dumps_bundle(bundle), PublicKey.load(made.public_key_path), head)
    assert report.valid, report.failure
    return summarize(report)


def test_export_by_asset_discloses_exactly_that_asset(made: Made) -> None:
    bundle = export(made, Selection(asset_id="SHIP-2"))
    summary = verified(made, bundle)
    assert summary["count"] == 3 * made.blocks
    assert set(summary["devices"]) == {"reefer-2"}
    device = summary["devices"]["reefer-2"]
    assert device["seq_gaps"] == {"temperature": []}
    assert device["assets"] == ["SHIP-2"]
    # Nothing of other assets is in the file, not even their salts.
    disclosed = {
        Envelope.from_bytes(base64.b64decode(r["envelope"])).topic for r in bundle["readings"]
    }
    assert disclosed == {"sensors/reefer-2/temperature"}


def test_export_by_device_and_time_range_reports_gaps(made: Made) -> None:
    from auditor_store import T0_NS

    selection = Selection(
        device_id="reefer-1", since_ns=T0_NS + 2 * 10**9, until_ns=T0_NS + 5 * 10**9
    )
    summary = verified(made, export(made, selection))
    rows = summary["readings"]
    assert [r["seq"] for r in rows] == list(range(6, 15))
    assert {r["block_height"] for r in rows} == {2, 3, 4}


def test_export_by_reading_id_and_gaps_between_them(made: Made) -> None:
    ids = (ReadingRef(1, 0), ReadingRef(7, 0), ReadingRef(11, 6))
    summary = verified(made, export(made, Selection(reading_ids=ids)))
    assert [r["id"] for r in summary["readings"]] == ["1:0", "7:0", "11:6"]
    gaps = summary["devices"]["reefer-1"]["seq_gaps"]["temperature"]
    assert gaps == [[4, 20]]


def test_export_with_an_older_trusted_head(made: Made) -> None:
    with StoreReader.open(made.path) as reader:
        old = reader.block(4)
    assert old is not None
    old_hash = old[2]
    bundle = export(made, Selection(device_id="tracker-1"), since_head=old_hash)
    summary = verified(made, bundle, old_hash)
    assert summary["extends"] == old_hash.hex()


def test_bad_selections_are_explained(made: Made) -> None:
    with pytest.raises(ValueError, match="select readings by"):
        Selection()
    with pytest.raises(ValueError, match="'from' must be before 'to'"):
        Selection(since_ns=5, until_ns=5)
    with pytest.raises(ValueError, match="HEIGHT:INDEX"):
        ReadingRef.parse("7-1")
    with pytest.raises(ExportError, match="no anchored reading"):
        export(made, Selection(device_id="nobody"))
    with pytest.raises(ExportError, match="more than 5 readings"):
        export(made, Selection(asset_id="SHIP-1"), limit=5)
    with pytest.raises(ExportError, match="not a block of this store"):
        export(made, Selection(device_id="reefer-1"), since_head=bytes(32))


def test_export_from_an_empty_store(tmp_path: Path) -> None:
    from gateway.store import Store

    Store.open(tmp_path / "empty.duckdb").close()
    with (
        StoreReader.open(tmp_path / "empty.duckdb") as reader,
        pytest.raises(ExportError, match="no blocks yet"),
    ):
        export_bundle(reader, Selection(device_id="x"))


@pytest.mark.parametrize("leaves_per_query", [1, 7, 15, 1 << 16])
def test_paths_are_the_same_whatever_the_blocks_per_query(
    made: Made, monkeypatch: pytest.MonkeyPatch, leaves_per_query: int
) -> None:
    # The audit paths are read a run of blocks per query (so that a device's day on a
    # big store fits the running gateway's DuckDB memory); runs of one block, of two
    # (seven leaves each), of a block and a half, or all in one query give one bundle.
    import gateway.proofs

    whole = export(made, Selection(asset_id="SHIP-1"))
    monkeypatch.setattr(gateway.proofs, "PATH_QUERY_LEAVES", leaves_per_query)
    runs = export(made, Selection(asset_id="SHIP-1"))
    assert runs == whole
    assert verified(made, runs)["count"] == 4 * made.blocks
