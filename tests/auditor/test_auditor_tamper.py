"""Tampering with a real store is found by the audit, and breaks proofs made afterwards.

Each case ingests readings into a real DuckDB file through the gateway's anchorer,
exports a bundle and notes the head, then edits the file with DuckDB as an attacker
with database access would, and checks that ``audit_store`` names the problem and
that a bundle exported after the edit fails against the head trusted before it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from auditor_store import Made, make_store

from gateway.audit import audit_store
from gateway.audit_sql import reference_layout
from gateway.proofs import ExportError, export_bundle
from gateway.reader import ReadingRef, Selection, StoreReader
from ledger import BlockHeader, PublicKey, SigningKey, dumps_bundle, verify_bundle

Edit = Callable[[duckdb.DuckDBPyConnection], None]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_store(tmp_path_factory.mktemp("pristine"), batches=8)


@pytest.fixture
def made(pristine: Made, tmp_path: Path) -> Made:
    return pristine.copy_to(tmp_path)


def edited(made: Made, edit: Edit) -> PublicKey:
    """Apply ``edit`` to the store file; the key to audit it with."""
    con = duckdb.connect(str(made.path))
    edit(con)
    con.close()
    return PublicKey.load(made.public_key_path)


def header_of(con: duckdb.DuckDBPyConnection, height: int) -> BlockHeader:
    row = con.execute("SELECT header FROM blocks WHERE height = ?", [height]).fetchone()
    assert row is not None
    return BlockHeader.from_bytes(bytes(row[0]))


def resign(con: duckdb.DuckDBPyConnection, height: int, key: SigningKey, **fields: object) -> None:
    from dataclasses import replace

    header = replace(header_of(con, height), **fields)  # type: ignore[arg-type]
    data = header.to_bytes()
    con.execute(
        "UPDATE blocks SET header = ?, signature = ? WHERE height = ?",
        [data, key.sign(data), height],
    )


def edit_value(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE readings SET celsius = 3.9 WHERE block_height = 3 AND leaf_index = 0")


def edit_payload(con: duckdb.DuckDBPyConnection) -> None:
    row = con.execute(
        "SELECT envelope FROM readings WHERE block_height = 3 AND leaf_index = 0"
    ).fetchone()
    assert row is not None
    edited = bytes(row[0]).replace(b'"celsius":4.0', b'"celsius":3.0')
    assert edited != bytes(row[0])
    con.execute(
        "UPDATE readings SET envelope = ?, celsius = 3.0 WHERE block_height = 3 AND leaf_index = 0",
        [edited],
    )


def edit_salt(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE readings SET salt = ? WHERE block_height = 3 AND leaf_index = 0", [bytes(16)]
    )


def edit_leaf_hash(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE readings SET leaf_hash = ? WHERE block_height = 3 AND leaf_index = 0", [bytes(32)]
    )


def delete_reading(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM readings WHERE block_height = 3 AND leaf_index = 2")


def insert_reading(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "INSERT INTO readings SELECT * REPLACE (7 AS leaf_index, seq + 100 AS seq) "
        "FROM readings WHERE block_height = 3 AND leaf_index = 0"
    )


def swap_readings(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE readings SET leaf_index = CASE leaf_index WHEN 0 THEN 1 ELSE 0 END "
        "WHERE block_height = 3 AND leaf_index IN (0, 1)"
    )


def edit_block_root(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE blocks SET batch_root = ? WHERE height = 3", [bytes(32)])


def edit_header_field(con: duckdb.DuckDBPyConnection) -> None:
    row = con.execute("SELECT header FROM blocks WHERE height = 3").fetchone()
    assert row is not None
    header = bytearray(row[0])
    header[-40] ^= 1  # inside batch_root, leaf_count or the times: unsigned now
    con.execute("UPDATE blocks SET header = ? WHERE height = 3", [bytes(header)])


def delete_block(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM blocks WHERE height = 3")


def reorder_blocks(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE blocks SET height = CASE height WHEN 3 THEN 4 ELSE 3 END WHERE height IN (3, 4)"
    )


def resign_with_other_key(con: duckdb.DuckDBPyConnection) -> None:
    other = SigningKey.from_seed(b"\x09" * 32)
    resign(con, 3, other, key_id=other.key_id)


def fork_chain(con: duckdb.DuckDBPyConnection) -> None:
    # A second block at height 3, validly signed by the real key (a stolen key, or a
    # gateway that was made to sign twice).
    key = SigningKey.from_seed(bytes(range(32)))
    con.execute("INSERT INTO blocks SELECT * FROM blocks WHERE height = 3")
    header = header_of(con, 3)
    from dataclasses import replace

    forked = replace(header, batch_root=bytes(range(32)))
    data = forked.to_bytes()
    con.execute(
        "UPDATE blocks SET header = ?, signature = ? WHERE rowid = (SELECT max(rowid) FROM blocks)",
        [data, key.sign(data)],
    )


# (name, edit, words the audit's reason must contain, whether proofs break too). Edits of
# derived columns alone (a parsed value, the salt column, the block root column) leave
# the signed envelopes and headers intact: the audit finds them, and bundles, which
# carry only signed bytes, stay true.
CASES: list[tuple[str, Edit, str, bool]] = [
    ("edited value", edit_value, "column celsius", False),
    ("edited payload", edit_payload, "does not match its leaf hash", True),
    ("edited salt", edit_salt, "column salt differs", False),
    ("edited leaf hash", edit_leaf_hash, "does not match its leaf hash", True),
    ("deleted reading", delete_reading, "missing leaf indexes 2", True),
    ("inserted reading", insert_reading, "8 readings stored, the signed header says 7", True),
    ("swapped readings", swap_readings, "do not hash to its root", True),
    ("edited block root", edit_block_root, "column batch_root differs", False),
    ("edited header field", edit_header_field, "signature", True),
    ("deleted block", delete_block, "height-gap", True),
    ("reordered blocks", reorder_blocks, "column height differs", True),
    ("re-signed with another key", resign_with_other_key, "unknown-key", True),
    ("forked chain", fork_chain, "duplicate-height", True),
]


@pytest.mark.parametrize(
    ("edit", "reason", "breaks"), [pytest.param(e, r, b, id=n) for n, e, r, b in CASES]
)
def test_tampering_is_found_and_breaks_later_proofs(
    made: Made, edit: Edit, reason: str, breaks: bool
) -> None:
    key = PublicKey.load(made.public_key_path)
    picks = Selection(reading_ids=(ReadingRef(3, 0), ReadingRef(3, 2)))
    with StoreReader.open(made.path) as reader:
        assert audit_store(reader, key).ok
        before = export_bundle(reader, picks)
    assert verify_bundle(dumps_bundle(before.bundle), key).valid

    con = duckdb.connect(str(made.path))
    edit(con)
    con.close()

    with StoreReader.open(made.path) as reader:
        report = audit_store(reader, key)
        assert not report.ok
        assert any(reason in p.reason for p in report.problems), report.problems
        try:
            after = export_bundle(
                reader, Selection(reading_ids=(ReadingRef(3, 0), ReadingRef(3, 1)))
            )
        except ExportError:
            assert breaks
            return  # the store can no longer even produce a proof
    verdict = verify_bundle(dumps_bundle(after.bundle), key, before.head_hash)
    assert verdict.valid != breaks, verdict.failure


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(e, id=n)
        for n, e, _, _ in CASES
        if n in ("deleted block", "reordered blocks", "forked chain", "deleted reading")
    ],
)
def test_parallel_audit_finds_the_same(made: Made, edit: Edit) -> None:
    from gateway.audit_parallel import audit_file

    key = edited(made, edit)
    with StoreReader.open(made.path) as reader:
        alone = audit_store(reader, key)
    split = audit_file(made.path, key, workers=2, min_span=2)
    assert (split.blocks, split.readings) == (alone.blocks, alone.readings)
    assert set(split.problems) == set(alone.problems)
    assert split.head_hash == alone.head_hash


@pytest.mark.parametrize("edit", [pytest.param(e, id=n) for n, e, _, _ in CASES])
def test_both_reading_queries_find_the_same(made: Made, edit: Edit) -> None:
    # This store's JSON payloads are in the reference layout, so the audit reads it with
    # REFERENCE_READING_SQL; READING_SQL, for payloads in other layouts, must find the
    # same problems.
    key = edited(made, edit)
    reports = []
    for reference in (True, False):
        with StoreReader.open(made.path) as reader:
            reports.append(audit_store(reader, key, reference=reference))
    assert reports[0].problems == reports[1].problems
    assert (reports[0].blocks, reports[0].readings) == (reports[1].blocks, reports[1].readings)
    assert not reports[0].ok


def test_the_reference_layout_is_chosen_for_this_store(made: Made) -> None:
    with StoreReader.open(made.path) as reader:
        assert reference_layout(reader)


def test_truncated_tail_is_found_when_the_later_head_is_pinned(made: Made) -> None:
    key = PublicKey.load(made.public_key_path)
    with StoreReader.open(made.path) as reader:
        later = reader.block(made.blocks - 1)
    assert later is not None
    con = duckdb.connect(str(made.path))
    con.execute("DELETE FROM readings WHERE block_height >= 6")
    con.execute("DELETE FROM blocks WHERE height >= 6")
    head = con.execute("SELECT head_after FROM blocks WHERE height = 5").fetchone()
    assert head is not None
    con.execute("UPDATE meta SET value = ? WHERE key = 'chain_head'", [head[0]])
    con.close()
    with StoreReader.open(made.path) as reader:
        assert audit_store(reader, key).ok  # consistent in itself...
        report = audit_store(reader, key, trusted_head=later[2])
        assert not report.ok  # ...but the head the auditor saw is gone
        assert "trusted head" in report.problems[0].reason
        after = export_bundle(reader, Selection(reading_ids=(ReadingRef(1, 0),)))
    assert not verify_bundle(dumps_bundle(after.bundle), key, later[2]).valid


def test_audit_streams_past_many_problems(made: Made) -> None:
    con = duckdb.connect(str(made.path))
    con.execute("UPDATE readings SET celsius = celsius + 1 WHERE kind = 'temperature'")
    con.close()
    with StoreReader.open(made.path) as reader:
        report = audit_store(reader, PublicKey.load(made.public_key_path))
    assert report.blocks == made.blocks
    assert report.readings == made.readings
    assert len(report.problems) == 6 * made.blocks
