"""The DuckDB store and the anchorer on real files: one transaction per batch, dedup, checks."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest
from gateway_cases import NOW_MS, NOW_NS

from gateway.anchor import Accepted, Anchorer, Rejected, dedup_key
from gateway.chain_check import check_recent_blocks
from gateway.errors import StoreError, StoreMismatchError
from gateway.readings import LocationReading, TemperatureReading, encode_reading
from gateway.schema import SCHEMA_VERSION
from gateway.store import Store
from ledger import ChainHead, Envelope, MerkleTree, SigningKey, verify_chain

KEY = SigningKey.from_seed(bytes(32))


def temp(device: str, seq: int | None, celsius: float = 20.0, offset: int = 0) -> Accepted:
    reading = TemperatureReading(device, seq, NOW_MS + offset, celsius)
    return Accepted(
        f"sensors/{device}/temperature",
        encode_reading(reading),
        NOW_NS + offset * 1_000_000,
        reading,
        "json",
    )


def make_anchorer(store: Store, window: int = 3600 * 10**9) -> Anchorer:
    clock = itertools.count(NOW_NS + 10**9, 1000)
    return Anchorer(store, KEY, "gw-test", duplicate_window_ns=window, clock=lambda: next(clock))


def test_new_store_has_the_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        assert store.schema_version() == SCHEMA_VERSION
        tables = {row[0] for row in store.query("SELECT table_name FROM information_schema.tables")}
        assert tables == {"meta", "blocks", "readings", "rejects", "alerts"}
    with Store.open(tmp_path / "s.duckdb") as store:  # opening again changes nothing
        assert store.schema_version() == SCHEMA_VERSION


def test_migration_path_applies_missing_steps_and_refuses_newer(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    from gateway.schema import MIGRATIONS

    newer = SCHEMA_VERSION + 1
    steps = {**MIGRATIONS, newer: ("ALTER TABLE readings ADD COLUMN note VARCHAR",)}
    with Store.open(path, migrations=steps) as store:
        assert store.schema_version() == newer
        assert "note" in {row[0] for row in store.query("DESCRIBE readings")}
    with pytest.raises(
        StoreMismatchError, match=rf"schema version {newer}; .* up to {SCHEMA_VERSION}: upgrade"
    ):
        Store.open(path)


def test_a_batch_is_anchored_and_committed_in_one_block(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        anchorer = make_anchorer(store)
        location = LocationReading("trk", 1, NOW_MS, 1.0, 2.0, speed_mps=3.0)
        items: list[Accepted | Rejected] = [
            temp("a", 1),
            temp("a", 2, 21.0),
            Rejected("sensors/a/temperature", b"junk", NOW_NS, "payload", "not JSON"),
            Accepted(
                "sensors/trk/location",
                encode_reading(location, "msgpack"),
                NOW_NS,
                location,
                "msgpack",
            ),
        ]
        outcome = anchorer.commit(items)
        assert (outcome.stored, outcome.rejects, outcome.duplicates, outcome.height) == (3, 1, 0, 0)
        counts = store.counts()
        assert (counts.readings, counts.blocks, counts.rejects) == (3, 1, 1)
        rows = store.query(
            "SELECT device_id, seq, celsius, lat, speed_mps, leaf_index FROM readings "
            "ORDER BY leaf_index"
        )
        assert rows == [
            ("a", 1, 20.0, None, None, 0),
            ("a", 2, 21.0, None, None, 1),
            ("trk", 1, None, 1.0, 3.0, 2),
        ]
        block = store.blocks()[0]
        leaves = store.block_leaves(0)
        assert MerkleTree(leaf for _, leaf in leaves).root == block.batch_root
        envelope = Envelope.from_bytes(leaves[0][0])
        assert envelope.payload == items[0].payload
        assert store.query("SELECT field, reason, payload FROM rejects") == [
            ("payload", "not JSON", b"junk")
        ]
        head = verify_chain(
            [(b.header, b.signature) for b in store.blocks()], {KEY.key_id: KEY.public_key}
        )
        assert head.to_bytes() == store.chain_head()


def test_duplicates_are_dropped_within_a_batch_and_against_the_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        anchorer = make_anchorer(store)
        first = anchorer.commit([temp("a", 1), temp("a", 1), temp("a", None), temp("a", None)])
        assert (first.stored, first.duplicates) == (2, 2)
        second = anchorer.commit([temp("a", 1), temp("a", 2), temp("a", None), temp("b", 1)])
        assert (second.stored, second.duplicates, second.height) == (2, 2, 1)
        only_duplicates = anchorer.commit([temp("a", 2)])
        assert (only_duplicates.stored, only_duplicates.height) == (0, None)
        assert store.counts().blocks == 2
        assert dedup_key(temp("a", 7)) == "a/temperature/7"
        assert dedup_key(temp("a", None)).startswith("a/temperature/#")


def test_duplicate_window_bounds_the_lookup(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        anchorer = make_anchorer(store, window=10**9)  # one second
        anchorer.commit([temp("a", 1)])
        late = anchorer.commit([temp("a", 2, offset=5_000)])
        assert late.stored == 1
        # seq 1 was received 5 s before the newest reading: outside the window.
        assert anchorer.commit([temp("a", 1, offset=5_000)]).stored == 1


def test_a_restart_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        make_anchorer(store).commit([temp("a", 1)])
    with Store.open(path) as store:
        assert check_recent_blocks(store, KEY, "gw-test", 3) == 1
        anchorer = make_anchorer(store)
        assert anchorer.head.height == 1
        assert anchorer.commit([temp("a", 1), temp("a", 2)]).height == 1
        blocks = store.blocks()
        verify_chain([(b.header, b.signature) for b in blocks], {KEY.key_id: KEY.public_key})
        assert check_recent_blocks(store, KEY, "gw-test", 1) == 1


def test_a_failed_commit_leaves_nothing_and_the_retry_reuses_the_height(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        anchorer = make_anchorer(store)
        anchorer.commit([temp("a", 1)])
        store._con.execute("DROP TABLE rejects")
        bad = Rejected("t", b"x", NOW_NS, "payload", "p")
        with pytest.raises(StoreError, match="store: commit a batch failed"):
            anchorer.commit([temp("a", 2), bad])
        assert store.query("SELECT count(*) FROM readings") == [(1,)]
        assert anchorer.head.height == 1
        assert anchorer.commit([temp("a", 2)]).height == 1


def test_another_gateway_or_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        make_anchorer(store).commit([temp("a", 1)])
    with Store.open(path) as store:
        with pytest.raises(StoreMismatchError, match="belongs to gateway 'gw-test', not 'other'"):
            Anchorer(store, KEY, "other", duplicate_window_ns=0)
        with pytest.raises(StoreMismatchError, match="configured key"):
            Anchorer(store, SigningKey.generate(), "gw-test", duplicate_window_ns=0)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        pytest.param(
            "UPDATE readings SET envelope = envelope || 'x'::BLOB WHERE leaf_index = 1",
            "reading 1 does not match",
            id="envelope",
        ),
        pytest.param(
            "DELETE FROM readings WHERE leaf_index = 0",
            "1 stored readings, the header says 2",
            id="deleted",
        ),
        pytest.param(
            "UPDATE blocks SET signature = header WHERE height = 1",
            "block 1 does not verify",
            id="signature",
        ),
        pytest.param(
            "DELETE FROM blocks WHERE height = 1", "head says 2 blocks", id="block-deleted"
        ),
        pytest.param(
            "UPDATE readings SET leaf_hash = envelope WHERE leaf_index = 0 AND block_height = 1",
            "reading 0 does not match",
            id="leaf",
        ),
    ],
)
def test_a_tampered_store_is_refused_naming_the_block(
    tmp_path: Path, tamper: str, message: str
) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        anchorer = make_anchorer(store)
        anchorer.commit([temp("a", 1), temp("a", 2)])
        anchorer.commit([temp("a", 3), temp("a", 4)])
    con = duckdb.connect(str(path))
    con.execute(tamper)
    con.close()
    with Store.open(path) as store, pytest.raises(StoreMismatchError, match=message):
        check_recent_blocks(store, KEY, "gw-test", 5)


def test_a_store_in_use_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,sys; c=duckdb.connect({str(path)!r}); "
            "print('ok', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"ok"
        with pytest.raises(StoreError, match="in use by another process"):
            Store.open(path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()  # type: ignore[union-attr]


def test_genesis_head_for_an_empty_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        assert make_anchorer(store).head == ChainHead.genesis()
        assert check_recent_blocks(store, KEY, "gw-test", 3) == 0


def test_new_sequence_numbers_cost_no_lookup_and_marks_survive_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        anchorer = make_anchorer(store)
        lookups: list[list[str]] = []
        original = store.existing_keys

        def counted(keys: list[str], since: int) -> set[str]:
            lookups.append(list(keys))
            return original(keys, since)

        monkeypatch.setattr(store, "existing_keys", counted)
        anchorer.commit([temp("a", n) for n in range(10)])
        anchorer.commit([temp("a", n) for n in range(10, 20)] + [temp("b", 0)])
        assert lookups == []  # every seq was above its device's mark
        redelivered = anchorer.commit([temp("a", 5), temp("a", 20)])
        assert (redelivered.stored, redelivered.duplicates) == (1, 1)
        assert lookups == [["a/temperature/5"]]
    with Store.open(path) as store:
        anchorer = make_anchorer(store)
        again = anchorer.commit([temp("a", 19), temp("b", 0), temp("b", 1)])
        assert (again.stored, again.duplicates) == (1, 2)


def test_the_connection_is_recycled_after_enough_rows_but_not_under_a_reader(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.recycle_rows = 5
        anchorer = make_anchorer(store)
        anchorer.commit([temp("a", seq) for seq in range(1, 4)])
        assert store.recycles == 0
        anchorer.commit([temp("a", seq) for seq in range(4, 7)])
        assert store.recycles == 1
        # A reader elsewhere holds a cursor: the store waits for it.
        reading = True
        store.readers_active = lambda: reading
        cursor = store.read_cursor()
        anchorer.commit([temp("a", seq) for seq in range(7, 13)])
        assert store.recycles == 1
        assert cursor.execute("SELECT count(*) FROM readings").fetchone() == (12,)
        cursor.close()
        reading = False
        anchorer.commit([temp("a", 13)])
        assert store.recycles == 2
        # Nothing was lost across the reopens, duplicates are still recognised, and
        # the chain continues.
        outcome = anchorer.commit([temp("a", 13), temp("a", 14)])
        assert (outcome.stored, outcome.duplicates) == (1, 1)
        blocks = store.blocks()
        assert [b.height for b in blocks] == list(range(5))
        verify_chain([(b.header, b.signature) for b in blocks], {KEY.key_id: KEY.public_key})
        assert store.counts().readings == 14


def test_a_recycle_that_cannot_reopen_keeps_the_batch_and_the_next_commit_reopens(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        store.recycle_rows = 2
        anchorer = make_anchorer(store)
        store._config["memory_limit"] = "not a size"  # DuckDB refuses to open with it
        outcome = anchorer.commit([temp("a", 1), temp("a", 2)])
        assert (outcome.stored, outcome.height) == (2, 0)
        assert store.reopen_failed
        assert store.invalidated
        with pytest.raises(StoreError, match="cannot open"):
            anchorer.commit([temp("a", 3)])  # still cannot reopen: nothing committed
        store._config["memory_limit"] = "64MB"
        assert anchorer.commit([temp("a", 3)]).height == 1
        assert not store.reopen_failed
        assert store.counts().readings == 3
        blocks = store.blocks()
        verify_chain([(b.header, b.signature) for b in blocks], {KEY.key_id: KEY.public_key})
