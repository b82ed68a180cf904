"""The DuckDB store: readings, blocks, rejects and meta in one file with one writer.

The tables and their migrations are in gateway.schema. A batch is written by
:meth:`Store.commit_batch` in ONE transaction (readings + block + rejects + alerts +
the new chain head), each table's rows in one INSERT (gateway.columns), never row by
row. Every ``duckdb.Error`` is converted here to :class:`~gateway.errors.StoreError`.
:meth:`Store.open` creates a store or migrates an older one (``MIGRATIONS``) in one
transaction, and refuses a store from a newer anchorgate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from gateway.columns import (
    ColumnData,
    Columns,
    from_rows,
    insert_statement,
    row_count,
    to_document,
)
from gateway.errors import StoreError, StoreMismatchError
from gateway.schema import (
    ALERTS_COLUMNS,
    BLOCK_COLUMNS,
    MIGRATIONS,
    READINGS_COLUMNS,
    READINGS_DERIVED,
    REJECTS_COLUMNS,
    BlockRow,
)


@dataclass(frozen=True, slots=True)
class StoreCounts:
    readings: int
    blocks: int
    rejects: int


@contextlib.contextmanager
def _converted(operation: str) -> Iterator[None]:
    """Turn a duckdb.Error into a StoreError saying which operation failed."""
    try:
        yield
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise StoreError(f"store: {operation} failed: {first_line}") from exc


_BATCH_TABLES: Mapping[str, Columns] = {
    "readings": READINGS_COLUMNS,
    "rejects": REJECTS_COLUMNS,
    "alerts": ALERTS_COLUMNS,
}
_INSERTS = {
    "readings": insert_statement("readings", READINGS_COLUMNS, READINGS_DERIVED),
    "rejects": insert_statement("rejects", REJECTS_COLUMNS),
    "alerts": insert_statement("alerts", ALERTS_COLUMNS),
}


def _as_columns(
    columns: Columns, data: ColumnData | Sequence[Mapping[str, Any]]
) -> tuple[ColumnData, int]:
    """A column batch and its row count, from columns or from row dictionaries."""
    batch = data if isinstance(data, Mapping) else from_rows(columns, data)
    return batch, row_count(columns, batch)


class Store:
    """One open DuckDB file; all methods run on one thread at a time (the writer)."""

    def __init__(
        self, connection: duckdb.DuckDBPyConnection, path: Path, config: Mapping[str, Any]
    ) -> None:
        self._con = connection
        self.path = path
        self._config = dict(config)
        # See recycle(): rows committed since the connection was opened, the limit, and
        # whether a reader elsewhere still uses a cursor of this connection.
        self.recycle_rows = 0
        self.readers_active: Callable[[], bool] = lambda: False
        self.recycles = 0
        self.reopen_failed = False  # a recycle closed the connection and could not reopen
        self._rows_since_open = 0

    @staticmethod
    def _connect(path: Path, config: Mapping[str, Any]) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(path), config=dict(config))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreError(
                    f"store: {path} is in use by another process (is a gateway running on it?)"
                ) from None
            raise StoreError(f"store: cannot open {path}: {exc}") from None
        except duckdb.Error as exc:
            raise StoreError(f"store: cannot open {path}: {exc}") from None

    @property
    def invalidated(self) -> bool:
        """True after a DuckDB fatal error: the connection must be reopened before use."""
        try:
            self._con.execute("SELECT 1").fetchall()
        except duckdb.Error:
            return True
        return False

    def read_cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database, for reads on another thread.

        Call it on the writer thread (DuckDB connections are not thread-safe); the
        cursor may then be used, and must be closed, on any one thread.
        """
        with _converted("open a read cursor"):
            return self._con.cursor()

    def reopen(self) -> None:
        """Close and open the file again (after a fatal error; committed data is on disk)."""
        with contextlib.suppress(duckdb.Error):
            self._con.close()
        self._con = self._connect(self.path, self._config)
        self._rows_since_open = 0
        self.reopen_failed = False

    def _recycle_if_due(self) -> None:
        """Reopen the connection after ``recycle_rows`` committed rows, when no reader is open.

        DuckDB keeps in memory the metadata of every row group this connection has
        written until the database is closed: about 9 MB per million readings, so a
        gateway that runs for months would grow without bound. Closing (which also
        checkpoints) and reopening gives it back (bench/ingest.py, backlog figure).
        A cursor handed out by :meth:`read_cursor` keeps the old database alive, so
        the store waits until ``readers_active()`` is false.
        """
        if not self.recycle_rows or self._rows_since_open < self.recycle_rows:
            return
        if self.readers_active():
            return
        try:
            self.reopen()
        except StoreError:
            # The batch is committed: its commit stands. The anchorer reopens the store
            # before the next one (Anchorer._resume).
            self.reopen_failed = True
            return
        self.recycles += 1

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        memory_limit: str = "64MB",
        threads: int = 1,
        migrations: Mapping[int, Sequence[str]] = MIGRATIONS,
    ) -> Store:
        """Open or create the store at ``path`` and bring its schema up to date."""
        path = Path(path)
        target = max(migrations)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store: cannot create {path.parent}: {exc.strerror}") from None
        config: dict[str, Any] = {"memory_limit": memory_limit, "threads": threads}
        con = cls._connect(path, config)
        store = cls(con, path, config)
        try:
            store._migrate(target, migrations)
        except BaseException:
            con.close()
            raise
        return store

    def _migrate(self, target: int, migrations: Mapping[int, Sequence[str]]) -> None:
        version = self.schema_version()
        if version > target:
            raise StoreMismatchError(
                f"store: {self.path} has schema version {version}; this anchorgate knows "
                f"versions up to {target}: upgrade anchorgate"
            )
        if version == target:
            return
        with self.transaction(f"migrate schema {version} -> {target}"):
            for step in range(version + 1, target + 1):
                for statement in migrations[step]:
                    self._con.execute(statement)
            self._put_meta("schema_version", str(target).encode())

    def schema_version(self) -> int:
        """0 for an empty file, else the version recorded in meta."""
        with _converted("read the schema version"):
            found = self._one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
            )
            if found is None or found[0] == 0:
                return 0
            row = self._one("SELECT value FROM meta WHERE key = 'schema_version'")
        if row is None:
            raise StoreMismatchError(f"store: {self.path} has a meta table without schema_version")
        return int(bytes(row[0]).decode())

    @contextlib.contextmanager
    def transaction(self, operation: str) -> Iterator[None]:
        """BEGIN ... COMMIT, rolled back on any error; duckdb errors become StoreError."""
        with _converted(operation):
            self._con.execute("BEGIN TRANSACTION")
        try:
            with _converted(operation):
                yield
                self._con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self._con.execute("ROLLBACK")
            raise

    def _one(self, sql: str, parameters: Sequence[object] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, reading the whole result (DuckDB wants it finished)."""
        rows = self._con.execute(sql, list(parameters)).fetchall()
        return rows[0] if rows else None

    def get_meta(self, key: str) -> bytes | None:
        with _converted(f"read meta {key}"):
            row = self._one("SELECT value FROM meta WHERE key = ?", [key])
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        with _converted(f"write meta {key}"):
            self._put_meta(key, value)

    def claim(self, gateway_id: str, key_id: bytes) -> None:
        """Record which gateway and key write this store, or refuse if it is another's."""
        stored_id = self.get_meta("gateway_id")
        if stored_id is None:
            with self.transaction("record the gateway id"):
                self.set_meta("gateway_id", gateway_id.encode())
                self.set_meta("key_id", key_id)
            return
        if stored_id.decode() != gateway_id:
            raise StoreMismatchError(
                f"store: {self.path} belongs to gateway {stored_id.decode()!r}, "
                f"not {gateway_id!r} (each gateway needs its own store)"
            )
        stored_key = self.get_meta("key_id")
        if stored_key != key_id and self.count_blocks() > 0:
            raise StoreMismatchError(
                f"store: {self.path} was signed with key {(stored_key or b'').hex()[:16]}, "
                f"the configured key is {key_id.hex()[:16]} (gateway.key_file)"
            )

    def existing_keys(self, keys: Sequence[str], since_ns: int) -> set[str]:
        """Which of ``keys`` are already stored with a receive time of ``since_ns`` or later."""
        if not keys:
            return set()
        with _converted("look up duplicates"):
            rows = self._con.execute(
                "SELECT DISTINCT dedup_key FROM readings "
                "WHERE dedup_key IN (SELECT unnest($1::VARCHAR[])) AND received_ns >= $2",
                [list(keys), since_ns],
            ).fetchall()
        return {row[0] for row in rows}

    def stored_envelopes(self, keys: Sequence[str], since_ns: int) -> dict[str, bytes]:
        """The envelope of each of ``keys`` stored since ``since_ns`` (one per key)."""
        if not keys:
            return {}
        with _converted("read stored payloads"):
            rows = self._con.execute(
                "SELECT dedup_key, any_value(envelope) FROM readings "
                "WHERE dedup_key IN (SELECT unnest($1::VARCHAR[])) AND received_ns >= $2 "
                "GROUP BY dedup_key",
                [list(keys), since_ns],
            ).fetchall()
        return {str(key): bytes(envelope) for key, envelope in rows}

    def highest_seqs(self, since_ns: int) -> dict[tuple[str, str], int]:
        """The highest seq per (device_id, kind) among readings received since ``since_ns``."""
        with _converted("read the highest sequence numbers"):
            rows = self._con.execute(
                "SELECT device_id, kind, max(seq) FROM readings "
                "WHERE received_ns >= ? AND seq IS NOT NULL GROUP BY device_id, kind",
                [since_ns],
            ).fetchall()
        return {(str(device), str(kind)): int(seq) for device, kind, seq in rows}

    def commit_batch(
        self,
        readings: ColumnData | Sequence[Mapping[str, Any]],
        block: BlockRow | None,
        rejects: ColumnData | Sequence[Mapping[str, Any]],
        alerts: ColumnData | Sequence[Mapping[str, Any]] = (),
        meta: Mapping[str, bytes] | None = None,
    ) -> None:
        """Write one batch in ONE transaction: readings, their block, rejects, alerts, head.

        Each table's rows come as a column batch (gateway.columns) or as row dictionaries.
        ``meta`` entries are written in the same transaction (a key rotation's new
        ``key_id``).
        """
        batches = {
            table: _as_columns(_BATCH_TABLES[table], data)
            for table, data in (("readings", readings), ("rejects", rejects), ("alerts", alerts))
        }
        if batches["readings"][1] and block is None:
            raise ValueError("readings need the block that anchors them")
        if batches["alerts"][1] and block is None:
            raise ValueError("alerts need the block that anchors their readings")
        with self.transaction("commit a batch"):
            if batches["readings"][1]:
                assert block is not None
                self._insert("readings", batches["readings"][0], block.height)
            if block is not None:
                placeholders = ", ".join("?" * len(BlockRow.__slots__))
                self._con.execute(
                    f"INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES ({placeholders})",
                    [getattr(block, name) for name in BlockRow.__slots__],
                )
                self._put_meta("chain_head", block.head_after)
            for key, value in (meta or {}).items():
                self._put_meta(key, value)
            for table in ("rejects", "alerts"):
                if batches[table][1]:
                    self._insert(table, batches[table][0])
        self._rows_since_open += sum(rows for _, rows in batches.values())
        self._recycle_if_due()

    def _put_meta(self, key: str, value: bytes) -> None:
        """Set a meta entry inside the caller's transaction (every meta write comes here).

        An UPDATE of the existing row: INSERT OR REPLACE on the primary key costs DuckDB
        about 2 ms of CPU more, once per batch for the chain head.
        """
        updated = self._con.execute("UPDATE meta SET value = ? WHERE key = ?", [value, key])
        if updated.fetchall() == [(0,)]:
            self._con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    def _insert(self, table: str, data: ColumnData, *parameters: object) -> None:
        document = to_document(_BATCH_TABLES[table], data)
        self._con.execute(_INSERTS[table], [document, *parameters])

    def chain_head(self) -> bytes | None:
        """The committed chain head's bytes, None for a store without blocks."""
        return self.get_meta("chain_head")

    def last_received_ns(self) -> int | None:
        """The receive time of the newest anchored reading."""
        with _converted("read the last receive time"):
            row = self._one("SELECT last_received_ns FROM blocks ORDER BY height DESC LIMIT 1")
        return None if row is None else int(row[0])

    def blocks(self, start: int = 0, stop: int | None = None) -> list[BlockRow]:
        """Blocks with start <= height < stop, in height order."""
        with _converted("read blocks"):
            rows = self._con.execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE height >= ? AND height < ? "
                "ORDER BY height",
                [start, stop if stop is not None else 2**62],
            ).fetchall()
        return [_block_row(row) for row in rows]

    def count_blocks(self) -> int:
        with _converted("count blocks"):
            row = self._one("SELECT count(*) FROM blocks")
        return 0 if row is None else int(row[0])

    def block_leaves(self, height: int) -> list[tuple[bytes, bytes]]:
        """(envelope, leaf_hash) of a block's readings in leaf order."""
        with _converted(f"read the leaves of block {height}"):
            rows = self._con.execute(
                "SELECT envelope, leaf_hash FROM readings WHERE block_height = ? "
                "ORDER BY leaf_index",
                [height],
            ).fetchall()
        return [(bytes(envelope), bytes(leaf)) for envelope, leaf in rows]

    def counts(self) -> StoreCounts:
        with _converted("count rows"):
            row = self._one(
                "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM blocks), "
                "(SELECT count(*) FROM rejects)"
            )
        assert row is not None
        return StoreCounts(readings=int(row[0]), blocks=int(row[1]), rejects=int(row[2]))

    def query(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (tests, status commands)."""
        with _converted("run a query"):
            return self._con.execute(sql, list(parameters)).fetchall()

    def checkpoint(self) -> None:
        with _converted("checkpoint"):
            self._con.execute("CHECKPOINT")

    def close(self) -> None:
        with _converted("close"):
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _block_row(row: tuple[Any, ...]) -> BlockRow:
    values: list[Any] = [
        bytes(v) if isinstance(v, bytes | bytearray | memoryview) else v for v in row
    ]
    return BlockRow(*values)
