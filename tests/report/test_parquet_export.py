"""anchorgate export-parquet: read back with DuckDB, re-verified, and idempotent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from report_store import GATEWAY_ID, anchor, signing_key

from gateway.cli import main
from gateway.parquet_export import HeightRange, export_parquet
from gateway.reader import StoreReader
from gateway.readings import Reading, TemperatureReading
from gateway.store import Store
from ledger import BlockHeader, MerkleTree, block_hash, hash_leaf, verify_chain

DAY_MS = 86_400_000
T0_MS = 1_764_028_800_000  # 2025-11-25T00:00:00Z
SIX_HOURS_MS = DAY_MS // 4


def days_of_readings(first: int, count: int) -> list[Reading]:
    """One reading every six hours from reading ``first``: four a day, two devices."""
    return [
        TemperatureReading(f"hs-{n % 2}", n, T0_MS + n * SIX_HOURS_MS, 20.0 + n, "RACK-1")
        for n in range(first, first + count)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.duckdb"
    # Batches of 5 readings 6 h apart: blocks straddle midnight (UTC).
    anchor(path, signing_key(), days_of_readings(0, 12), batch=5)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["export-parquet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def files_of(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(directory).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in directory.rglob("*")
        if p.is_file()
    }


def sql(query: str) -> duckdb.DuckDBPyRelation:
    relation = duckdb.sql(query)
    assert relation is not None
    return relation


def readings_of(directory: Path) -> duckdb.DuckDBPyRelation:
    pattern = str(directory / "readings" / "**" / "*.parquet")
    return sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)")


def blocks_of(directory: Path) -> list[tuple[int, bytes, bytes]]:
    pattern = str(directory / "blocks" / "*.parquet")
    rows = sql(
        f"SELECT height, header, signature FROM read_parquet('{pattern}') ORDER BY height"
    ).fetchall()
    return [(int(h), bytes(header), bytes(sig)) for h, header, sig in rows]


def verify_export(directory: Path, store: Path) -> None:
    """Re-verify the export as a central warehouse would: chain, leaves, batch roots."""
    key = signing_key().public_key
    blocks = blocks_of(directory)
    assert [h for h, _, _ in blocks] == list(range(len(blocks)))
    head = verify_chain([(header, sig) for _, header, sig in blocks], {key.key_id: key}, GATEWAY_ID)
    with StoreReader.open(store) as reader:
        status = reader.status()
    assert head.height == status["blocks"]
    assert head.prev_hash.hex() == status["head_hash"]
    assert block_hash(blocks[-1][1]).hex() == status["head_hash"]
    leaves: dict[int, list[bytes]] = {}
    rows = readings_of(directory).fetchall()
    for height, index, envelope, leaf in (
        readings_of(directory)
        .project("block_height, leaf_index, envelope, leaf_hash")
        .order("block_height, leaf_index")
        .fetchall()
    ):
        assert hash_leaf(bytes(envelope)) == bytes(leaf)
        assert index == len(leaves.setdefault(height, []))
        leaves[height].append(bytes(leaf))
    assert len(rows) == sum(len(v) for v in leaves.values())
    for height, header, _ in blocks:
        if height in leaves:
            parsed = BlockHeader.from_bytes(header)
            assert MerkleTree(leaves[height]).root == parsed.batch_root
            assert parsed.leaf_count == len(leaves[height])


def test_export_reads_back_partitioned_by_day_and_verifies(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    code, _, err = run(capsys, "--store", str(store), "-o", str(out))
    assert code == 0, err
    assert "exported blocks 0..2; readings of blocks 0..2 (12 rows)" in err
    days = sorted(p.name for p in (out / "readings").iterdir())
    assert days == ["day=2025-11-25", "day=2025-11-26", "day=2025-11-27"]
    per_day = readings_of(out).aggregate("day, count(*)").order("day").fetchall()
    assert [(str(day), n) for day, n in per_day] == [
        ("2025-11-25", 4),
        ("2025-11-26", 4),
        ("2025-11-27", 4),
    ]
    # Every column of the store is there, values unchanged.
    with StoreReader.open(store) as reader:
        stored = reader.all("SELECT * FROM readings ORDER BY block_height, leaf_index")
    exported = readings_of(out).project("* EXCLUDE (day)").order("block_height, leaf_index")
    assert exported.fetchall() == stored
    verify_export(out, store)


def test_running_twice_writes_nothing_new(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert run(capsys, "--store", str(store), "-o", str(out))[0] == 0
    before = files_of(out)
    code, _, err = run(capsys, "--store", str(store), "-o", str(out), "--since", "2025-11-26")
    assert code == 0
    assert err.strip() == f"nothing new: {out} already holds everything asked for"
    assert files_of(out) == before


def test_later_runs_add_only_new_blocks(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert run(capsys, "--store", str(store), "-o", str(out))[0] == 0
    before = files_of(out)
    anchor(store, signing_key(), days_of_readings(12, 6), batch=5)  # blocks 3 and 4
    code, out_json, err = run(capsys, "--store", str(store), "-o", str(out), "--json")
    assert code == 0, err
    result = json.loads(out_json)
    assert result["blocks"] == [[3, 4]]
    assert result["readings"] == [[3, 4]]
    assert result["reading_rows"] == 6
    after = files_of(out)
    assert all(after[name] == stamp for name, stamp in before.items() if name != "manifest.json")
    new = sorted(set(after) - set(before))
    assert new == [
        "blocks/h000000000003-000000000004.parquet",
        "readings/day=2025-11-28/h000000000003-000000000004_0.parquet",
        "readings/day=2025-11-29/h000000000003-000000000004_0.parquet",
    ]
    keys = readings_of(out).aggregate("count(*), count(DISTINCT (block_height, leaf_index))")
    assert keys.fetchall() == [(18, 18)]
    verify_export(out, store)


def test_since_exports_all_blocks_and_later_readings_then_fills_in(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    # Reading 10 (received 2025-11-27T12:00:00.5Z) is in block 2, with readings 10 and 11.
    code, _, err = run(capsys, "--store", str(store), "-o", str(out), "--since", "2025-11-27T12:00")
    assert code == 0, err
    assert [h for h, _, _ in blocks_of(out)] == [0, 1, 2]
    assert readings_of(out).aggregate("min(block_height), count(*)").fetchall() == [(2, 2)]
    code, _, err = run(capsys, "--store", str(store), "-o", str(out))
    assert "exported blocks none new; readings of blocks 0..1 (10 rows)" in err
    verify_export(out, store)


def test_an_interrupted_run_leaves_nothing_that_counts_twice(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert run(capsys, "--store", str(store), "-o", str(out))[0] == 0
    # A run that died after moving a file into place but before writing the manifest.
    day = out / "readings" / "day=2025-11-25"
    shutil.copy(next(day.glob("*.parquet")), day / "h000000000003-000000000003_0.parquet")
    (out / ".incoming" / "blocks").mkdir(parents=True)
    anchor(store, signing_key(), days_of_readings(12, 2), batch=5)  # block 3
    assert run(capsys, "--store", str(store), "-o", str(out))[0] == 0
    assert not (out / ".incoming").exists()
    assert not (day / "h000000000003-000000000003_0.parquet").exists()
    verify_export(out, store)


def test_another_gateway_or_chain_is_refused(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert run(capsys, "--store", str(store), "-o", str(out))[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    other_chain = tmp_path / "other" / "gateway.duckdb"
    other_chain.parent.mkdir()
    anchor(other_chain, signing_key(), days_of_readings(100, 15), batch=5)
    code, _, err = run(capsys, "--store", str(other_chain), "-o", str(out))
    assert code == 2
    assert err.startswith(f"Error: -o: {out} holds block 2 ")
    assert "it is another chain" in err
    manifest["gateway_id"] = "gw-elsewhere"
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "--store", str(store), "-o", str(out))
    assert err.strip() == (
        f"Error: -o: {out} holds an export of gateway 'gw-elsewhere'; this store belongs to "
        f"gateway '{GATEWAY_ID}' (one directory per gateway)"
    )
    (out / "manifest.json").write_text("{")
    code, _, err = run(capsys, "--store", str(store), "-o", str(out))
    assert code == 2
    assert "is not an anchorgate export manifest" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_input_and_a_held_store(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "export")
    code, _, err = run(capsys, "--store", str(store), "-o", out, "--since", "last week")
    assert (code, err.strip()) == (
        2,
        "Error: --since: 'last week' is neither ISO 8601 (2026-11-24T10:00:00Z) nor Unix ns",
    )
    with Store.open(store):
        code, _, err = run(capsys, "--store", str(store), "-o", out)
    assert code == 2
    assert "is held by a running gateway: export-parquet reads the store file itself" in err
    code, _, err = run(capsys, "--store", str(tmp_path / "none.duckdb"), "-o", out)
    assert code == 2
    assert "does not exist" in err
    assert not Path(out).exists()


def test_empty_store_exports_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.duckdb"
    Store.open(path).close()
    code, _, err = run(capsys, "--store", str(path), "-o", str(tmp_path / "export"))
    assert (code, err.strip()) == (0, "the store has no blocks yet: nothing to export")


def test_long_ranges_go_out_in_pieces_of_whole_blocks(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with StoreReader.open(store) as reader:
        result = export_parquet(reader, out, rows_per_copy=6)
    # Blocks of 5, 5 and 2 readings: pieces 0..1 and 2..2.
    assert result.readings == [HeightRange(0, 2)]
    names = sorted(p.name for p in (out / "readings").rglob("*.parquet"))
    assert names == [
        "h000000000000-000000000001_0.parquet",
        "h000000000000-000000000001_0.parquet",
        "h000000000000-000000000001_0.parquet",
        "h000000000002-000000000002_0.parquet",
    ]
    verify_export(out, store)


def test_a_directory_with_other_files_is_refused(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    (out / "readings").mkdir(parents=True)
    (out / "readings" / "h1.parquet").write_text("someone else's")
    code, _, err = run(capsys, "--store", str(store), "-o", str(out))
    assert (code, err.strip()) == (
        2,
        f"Error: -o: {out} is not empty and holds no manifest.json: export into a new or "
        "empty directory",
    )
    assert (out / "readings" / "h1.parquet").read_text() == "someone else's"


def test_an_interrupted_first_run_is_cleaned_up(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with StoreReader.open(store) as reader:
        export_parquet(reader, out)
    # As if the first run had died after moving a file, before its manifest update.
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(
        json.dumps({**manifest, "blocks": [], "readings": [], "files": [], "runs": []})
    )
    with StoreReader.open(store) as reader:
        result = export_parquet(reader, out)
    assert result.blocks == [HeightRange(0, 2)]
    verify_export(out, store)
