"""The audit's fast paths agree with its plain ones, on real stores edited with DuckDB.

The walk reads a range's readings with one query, in batches, and cuts them into
blocks on Arrow columns when the rows lie in the order the gateway wrote them
(hashing the envelopes with hashlib); otherwise it reads them again a window of
heights at a time, and DuckDB groups and sorts them. Whatever the batch or window
size and whichever path is taken, the audit must find the same problems.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from auditor_store import Made, make_store
from test_auditor_tamper import CASES, Edit, edited

from gateway.audit import audit_store
from gateway.audit_groups import Untidy, block_groups, cut_groups, stream_groups
from gateway.audit_parallel import audit_file
from gateway.audit_sql import BLOCK_READINGS_SQL, READING_SQL
from gateway.reader import StoreReader
from ledger import PublicKey


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_store(tmp_path_factory.mktemp("pristine-windows"), batches=8)


@pytest.fixture
def made(pristine: Made, tmp_path: Path) -> Made:
    return pristine.copy_to(tmp_path)


def edit(made: Made, *statements: str, params: list[object] | None = None) -> None:
    """Run the statements on the store file; ``params`` go to the last one."""
    con = duckdb.connect(str(made.path))
    for statement in statements[:-1]:
        con.execute(statement)
    con.execute(statements[-1], params or [])
    con.close()


def grouped(reader: StoreReader, low: int, high: int) -> list[tuple[object, ...]]:
    return [tuple(row) for row in reader.all(BLOCK_READINGS_SQL, [low, high])]


@pytest.mark.parametrize("change", [pytest.param(e, id=n) for n, e, _, _ in CASES])
def test_one_block_per_window_finds_the_same(made: Made, change: Edit) -> None:
    key = edited(made, change)
    with StoreReader.open(made.path) as reader:
        whole = audit_store(reader, key)
        windows = audit_store(reader, key, window=1)
    assert not whole.ok
    assert (windows.blocks, windows.readings) == (whole.blocks, whole.readings)
    assert windows.problems == whole.problems


# A copy of reading 1:0 stored again under block 5, leaf 7.
COPY_READING_1_0_INTO_BLOCK_5 = (
    "INSERT INTO readings SELECT * REPLACE (5 AS block_height, 7 AS leaf_index) "
    "FROM readings WHERE block_height = 1 AND leaf_index = 0"
)


def edit_a_value_and_a_leaf_hash(made: Made) -> None:
    """Reading 3:0's celsius and reading 5:4's leaf hash, edited."""
    edit(
        made,
        "UPDATE readings SET celsius = 3.9 WHERE block_height = 3 AND leaf_index = 0",
        "UPDATE readings SET leaf_hash = ? WHERE block_height = 5 AND leaf_index = 4",
        params=[bytes(32)],
    )


def test_the_arrow_cut_equals_the_grouped_query(made: Made) -> None:
    edit_a_value_and_a_leaf_hash(made)
    with StoreReader.open(made.path) as reader:
        for low, high in ((0, 8), (2, 6), (3, 4), (8, 20)):
            cut = cut_groups(reader.table(READING_SQL, [low, high]))
            assert cut == grouped(reader, low, high)
        unsure = {group[0]: group[4] for group in block_groups(reader, 0, 8)}
    assert 0 in unsure[3]
    assert 4 in unsure[5]


@pytest.mark.parametrize("rows", [1, 6, 7, 8, 13, 1000])
def test_the_streamed_cut_equals_the_grouped_query(made: Made, rows: int) -> None:
    # Batches that end inside a block, on its last reading, and hold several blocks.
    edit_a_value_and_a_leaf_hash(made)
    with StoreReader.open(made.path) as reader:
        for low, high in ((0, 8), (2, 6), (3, 4), (8, 20)):
            assert list(stream_groups(reader, low, high, rows)) == grouped(reader, low, high)


def test_rows_out_of_file_order_audit_clean_through_the_grouped_query(made: Made) -> None:
    # Block 3's readings deleted and inserted again in reverse order, at the end of the
    # table: the same rows, so the same store, but not in the order the gateway wrote.
    edit(
        made,
        "CREATE TABLE moved AS SELECT * FROM readings WHERE block_height = 3",
        "DELETE FROM readings WHERE block_height = 3",
        "INSERT INTO readings SELECT * FROM moved ORDER BY leaf_index DESC",
        "DROP TABLE moved",
    )
    key = PublicKey.load(made.public_key_path)
    with StoreReader.open(made.path) as reader:
        assert cut_groups(reader.table(READING_SQL, [0, 8])) is None
        for rows in (1, 7, 1000):
            with pytest.raises(Untidy):
                list(stream_groups(reader, 0, 8, rows))
        assert list(stream_groups(reader, 4, 8, 5)) == grouped(reader, 4, 8)
        assert cut_groups(reader.table(READING_SQL, [4, 8])) is not None
        assert block_groups(reader, 0, 8) == grouped(reader, 0, 8)
        assert audit_store(reader, key).ok
    edit(made, "UPDATE readings SET celsius = 3.9 WHERE block_height = 3 AND leaf_index = 0")
    with StoreReader.open(made.path) as reader:
        report = audit_store(reader, key)
    assert [(p.row, p.reason) for p in report.problems] == [
        ("reading 3:0", "column celsius = 3.9 but the anchored payload says 4.0")
    ]


@pytest.mark.parametrize("size", [0, 31, 33])
def test_a_leaf_hash_of_the_wrong_size_is_reported(made: Made, size: int) -> None:
    edit(
        made,
        "UPDATE readings SET leaf_hash = ? WHERE block_height = 2 AND leaf_index = 1",
        params=[b"\x01" * size],
    )
    with StoreReader.open(made.path) as reader:
        report = audit_store(reader, PublicKey.load(made.public_key_path))
    assert [(p.row, p.reason) for p in report.problems] == [
        ("reading 2:1", "envelope does not match its leaf hash (edited)"),
        ("block 2", "the block's readings do not hash to its root"),
    ]


def test_a_leaf_stored_twice_is_found(made: Made) -> None:
    # A copy of reading 1:0 under another block and leaf index: its block's count and
    # root break too, and the repeat itself is named.
    edit(made, COPY_READING_1_0_INTO_BLOCK_5)
    with StoreReader.open(made.path) as reader:
        report = audit_store(reader, PublicKey.load(made.public_key_path))
    assert ("readings", None, "the same leaf is stored 2 times") in {
        (p.table, p.block, p.reason) for p in report.problems
    }


def test_a_small_memory_limit_still_finds_a_repeated_leaf(made: Made) -> None:
    # The store-wide repeat check groups hashes within DuckDB's memory limit, in the
    # parent beside two workers that keep to it too.
    edit(made, COPY_READING_1_0_INTO_BLOCK_5)
    key = PublicKey.load(made.public_key_path)
    report = audit_file(made.path, key, workers=2, min_span=2, memory_limit="64MB")
    assert ("readings", None, "the same leaf is stored 2 times") in {
        (p.table, p.block, p.reason) for p in report.problems
    }


def test_the_reader_keeps_to_its_memory_limit(made: Made) -> None:
    with StoreReader.open(made.path, memory_limit="100MB") as reader:
        limit = reader.one("SELECT current_setting('memory_limit')")
    assert limit is not None
    assert limit[0].endswith("MiB")
    assert float(limit[0][:-4]) < 100  # 100 MB is 95.3 MiB


def test_the_parallel_audit_shares_its_ranges_and_counts_every_block(made: Made) -> None:
    # This process walks ranges beside the pool's; whoever walks a range, every block is
    # counted once, progress only goes up, and the report is the single walk's.
    edit(
        made, "UPDATE readings SET celsius = celsius + 1 WHERE block_height = 3 AND leaf_index = 1"
    )
    key = PublicKey.load(made.public_key_path)
    with StoreReader.open(made.path) as reader:
        alone = audit_store(reader, key)
    seen: list[tuple[int, int]] = []
    split = audit_file(made.path, key, workers=3, min_span=1, progress=lambda *p: seen.append(p))
    assert (split.blocks, split.readings) == (alone.blocks, alone.readings)
    assert split.blocks == made.blocks
    assert split.problems == alone.problems
    assert split.head_hash == alone.head_hash
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert seen[-1] == (made.blocks, made.blocks)


def test_a_parallel_audit_that_fails_leaves_no_process_behind(made: Made) -> None:
    # An error in this process (here from the progress display; Ctrl-C is the same)
    # surfaces as itself, and the pool is shut down. (That the ranges it had not
    # started are dropped, not run first, shows only in time: bench-sized stores, 3.5 s
    # from SIGINT to exit on 10M readings instead of 26 s.)
    import multiprocessing

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise Stop

    key = PublicKey.load(made.public_key_path)
    with pytest.raises(Stop):
        audit_file(made.path, key, workers=2, min_span=1, progress=stop)
    assert multiprocessing.active_children() == []
