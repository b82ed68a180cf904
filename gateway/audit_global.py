"""The audit's checks of the store as a whole, beside the walk of its blocks.

:func:`store_checks` runs before the walk: the trusted head is still in the store,
the key rotations lead from the trusted key to the store's current key, and every
alert points at a stored reading of its device. After the walk, :func:`times_apart`
and :func:`repeated_leaves` make sure no leaf is stored in two blocks.
"""

from __future__ import annotations

from gateway.audit_rows import AuditReport
from gateway.errors import StoreMismatchError
from gateway.keyring import ROTATIONS_SQL, KeyHistory, read_rotations
from gateway.reader import StoreReader
from ledger import PublicKey


def store_checks(reader: StoreReader, key: PublicKey, trusted_head: bytes | None) -> AuditReport:
    """The checks that concern the store as a whole, made before the walk."""
    report = AuditReport()
    if trusted_head is not None:
        found = reader.one("SELECT height FROM blocks WHERE block_hash = ? LIMIT 1", [trusted_head])
        if found is None:
            report.add(
                "blocks",
                f"head {trusted_head.hex()[:16]}",
                None,
                f"the trusted head {trusted_head.hex()} is not in this store: blocks were "
                "removed or the chain was replaced",
            )
    stored_key = reader.meta("key_id")
    try:
        current = key_history(reader, key).current
    except StoreMismatchError as exc:
        report.add("blocks", "rotations", None, str(exc))
        current = key
    if stored_key is not None and stored_key != current.key_id:
        report.add(
            "meta",
            "key_id",
            None,
            f"the store's current key is {stored_key.hex()[:16]}, but following the key "
            f"rotations from the trusted key {key.key_id.hex()[:16]} leads to "
            f"{current.key_id.hex()[:16]}",
        )
    has_alerts = reader.one(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'"
    )
    if has_alerts and has_alerts[0]:
        # Every alert must point at an anchored reading of the same device.
        for alert_id, height, index in reader.all(
            "SELECT a.alert_id, a.block_height, a.leaf_index FROM alerts a "
            "WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.block_height = a.block_height "
            "AND r.leaf_index = a.leaf_index AND r.device_id = a.device_id) LIMIT 100"
        ):
            report.add(
                "alerts",
                f"alert {alert_id}",
                int(height),
                f"refers to reading {height}:{index}, which is not a stored reading of its device",
            )
    return report


def key_history(reader: StoreReader, key: PublicKey) -> KeyHistory:
    """The key history from the store's rotation blocks, starting at the trusted key."""
    return KeyHistory(key, read_rotations(reader.all(ROTATIONS_SQL)))


def times_apart(reader: StoreReader) -> bool:
    """True when no leaf can lie in two blocks, by the blocks' signed receive times.

    Called after a walk that found no problem: every stored header column then equals
    its signed header, and every reading's receive time its envelope's, whose hash is
    its leaf. The same leaf in two blocks is the same envelope, so the same receive
    time, in both. That is impossible when the blocks' [first, last] receive-time
    ranges are disjoint and each reading lies in its block's range, which two cheap
    queries show (0.13 s of CPU on 10 million readings, against 1.6 s for grouping
    every leaf). Ranges that overlap (the gateway's clock stepped back) leave the
    question to :func:`repeated_leaves`.
    """
    overlaps = reader.one(
        "SELECT count(*) FROM (SELECT first_received_ns, lag(last_received_ns) OVER "
        "(ORDER BY height) AS before FROM blocks WHERE leaf_count > 0) "
        "WHERE first_received_ns <= before"
    )
    outside = reader.one(
        "SELECT count(*) FROM readings r JOIN blocks b ON r.block_height = b.height "
        "WHERE r.received_ns < b.first_received_ns OR r.received_ns > b.last_received_ns"
    )
    return overlaps == (0,) and outside == (0,)


def repeated_leaves(reader: StoreReader, report: AuditReport) -> None:
    """Report every leaf hash stored more than once, by grouping all of them."""
    # A leaf stored twice. Grouping 64-bit hashes of the leaf hashes costs less than
    # grouping the 32-byte values, and DuckDB's grouping stays within the connection's
    # memory limit however big the store (count(DISTINCT ...) does not: its table of
    # 10 million hashes needs 128 MB at once). Only hashes seen twice (a repeat, or
    # very rarely a collision of those hashes) are looked at as values.
    twice = [
        h
        for (h,) in reader.all(
            "SELECT hash(leaf_hash) AS h FROM readings GROUP BY h HAVING count(*) > 1 LIMIT 1000"
        )
    ]
    repeats = []
    if twice:
        repeats = reader.all(
            "SELECT leaf_hash, count(*) FROM readings WHERE list_contains(?, hash(leaf_hash)) "
            "GROUP BY leaf_hash HAVING count(*) > 1 ORDER BY leaf_hash LIMIT 100",
            [twice],
        )
    for leaf, count in repeats:
        report.add(
            "readings",
            f"leaf {bytes(leaf).hex()[:16]}",
            None,
            f"the same leaf is stored {count} times",
        )
