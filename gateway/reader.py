"""Read-only access to a store, for the auditor's commands and the read API.

A :class:`StoreReader` wraps one DuckDB connection that only reads: either the file
opened read-only by :meth:`StoreReader.open` (when no gateway holds it), or a cursor
on the running gateway's own connection (DuckDB lets no second process open a file
a writer holds, but one process may read beside its writer). Large reads stream in
chunks so that memory stays bounded whatever the size of the store.

Every ``duckdb.Error`` becomes a :class:`~gateway.errors.StoreError` here; a store
that another process holds becomes :class:`StoreLockedError`, which the CLI answers
by going through the read API instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from gateway.errors import StoreError

if TYPE_CHECKING:
    import pyarrow as pa  # the service must not import it (memory: gateway/columns.py)

CHUNK_ROWS = 10_000
# DuckDB memory of a reader opened on a store file (export, status, report, audit): it
# bounds the pages DuckDB keeps cached, whatever the size of the store.
READ_MEMORY_LIMIT = "256MB"


def _quiet(connection: duckdb.DuckDBPyConnection) -> None:
    # No progress bar: DuckDB draws one on stdout for a query over 2 s, into the output
    # of `anchorgate audit --json` and friends. A per-connection setting.
    connection.execute("SET enable_progress_bar = false")


class StoreLockedError(StoreError):
    """Another process (a running gateway) holds the store file."""


@contextlib.contextmanager
def converted(operation: str) -> Iterator[None]:
    try:
        yield
    except duckdb.Error as exc:
        raise StoreError(f"store: cannot {operation}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ReadingRef:
    """Where one anchored reading sits: its block and its leaf index (its reading id)."""

    block_height: int
    leaf_index: int

    def __str__(self) -> str:
        return f"{self.block_height}:{self.leaf_index}"

    @classmethod
    def parse(cls, text: str) -> ReadingRef:
        """``HEIGHT:INDEX``, as printed by ``verify`` and ``export``."""
        height, sep, index = text.partition(":")
        if not sep or not height.isdigit() or not index.isdigit():
            raise ValueError(f"reading id {text!r} is not HEIGHT:INDEX (for example 42:7)")
        return cls(int(height), int(index))


@dataclass(frozen=True, slots=True)
class Selection:
    """Which readings to export; all given criteria must hold (at least one is needed)."""

    device_id: str | None = None
    asset_id: str | None = None
    since_ns: int | None = None  # gateway receive time, inclusive
    until_ns: int | None = None  # gateway receive time, exclusive
    reading_ids: tuple[ReadingRef, ...] = ()

    def __post_init__(self) -> None:
        if (
            self.device_id is None
            and self.asset_id is None
            and self.since_ns is None
            and self.until_ns is None
            and not self.reading_ids
        ):
            raise ValueError("select readings by device, asset, time range or reading id")
        if (
            self.since_ns is not None
            and self.until_ns is not None
            and self.since_ns >= self.until_ns
        ):
            raise ValueError("the time range is empty: 'from' must be before 'to'")

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on ``readings`` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.device_id is not None:
            clauses.append("device_id = ?")
            params.append(self.device_id)
        if self.asset_id is not None:
            clauses.append("asset_id = ?")
            params.append(self.asset_id)
        if self.since_ns is not None:
            clauses.append("received_ns >= ?")
            params.append(self.since_ns)
        if self.until_ns is not None:
            clauses.append("received_ns < ?")
            params.append(self.until_ns)
        if self.reading_ids:
            pairs = " OR ".join("(block_height = ? AND leaf_index = ?)" for _ in self.reading_ids)
            clauses.append(f"({pairs})")
            for ref in self.reading_ids:
                params += [ref.block_height, ref.leaf_index]
        return " AND ".join(clauses), params


class StoreReader:
    """Queries the auditor needs, over one read-only connection."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, *, owned: bool) -> None:
        self._con = connection
        self._owned = owned

    @classmethod
    def open(
        cls, path: Path, *, threads: int | None = None, memory_limit: str = READ_MEMORY_LIMIT
    ) -> StoreReader:
        """Open a store file read-only; StoreLockedError when a gateway holds it.

        ``memory_limit`` (DuckDB's setting, e.g. "256MB") caps the pages DuckDB keeps
        cached and its working memory; DuckDB's own default is 80% of the RAM, too much
        beside a gateway on an edge box.
        """
        if not Path(path).exists():
            raise StoreError(f"store: {path} does not exist")
        config: dict[str, str | bool | int | float | list[str]] = {}
        if threads is not None:
            config["threads"] = threads
        config["memory_limit"] = memory_limit
        try:
            connection = duckdb.connect(str(path), read_only=True, config=config)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            # Another process holds the lock, or (in this process) a writer has the
            # file open with another configuration.
            text = str(exc).lower()
            if "lock" in text or "same database file" in text:
                raise StoreLockedError(
                    f"store: {path} is held by a running gateway; use its read API"
                ) from None
            raise StoreError(f"store: cannot open {path}: {exc}") from None
        except duckdb.Error as exc:
            raise StoreError(f"store: cannot open {path}: {exc}") from None
        _quiet(connection)
        return cls(connection, owned=True)

    @classmethod
    def beside(cls, writer: duckdb.DuckDBPyConnection) -> StoreReader:
        """A reader on a cursor of the running gateway's connection."""
        return cls(writer.cursor(), owned=True)

    def close(self) -> None:
        if self._owned:
            with converted("close the store"):
                self._con.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- small reads -----------------------------------------------------------------

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with converted("read"):
            return self._con.execute(sql, list(params)).fetchall()

    def table(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """The whole result of a query as an Arrow table, for work on whole columns."""
        with converted("read"):
            cursor = self._con.cursor()  # its own: another query may be open on _con
            _quiet(cursor)
        try:
            with converted("read"):
                relation = cursor.sql(sql, params=list(params))
                assert relation is not None  # a SELECT gives a relation
                return relation.to_arrow_table()
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.close()

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with converted("read"):
            return self._con.execute(sql, list(params)).fetchone()

    def meta(self, key: str) -> bytes | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", [key])
        return None if row is None else bytes(row[0])

    def head_height(self) -> int | None:
        """Height of the newest block, None for an empty store."""
        row = self.one("SELECT max(height) FROM blocks")
        return None if row is None or row[0] is None else int(row[0])

    def block(self, height: int) -> tuple[bytes, bytes, bytes] | None:
        """(header, signature, stored block_hash) of the block at ``height``."""
        row = self.one(
            "SELECT header, signature, block_hash FROM blocks WHERE height = ? LIMIT 1", [height]
        )
        return None if row is None else (bytes(row[0]), bytes(row[1]), bytes(row[2]))

    def block_by_hash(self, block_hash: bytes) -> tuple[bytes, bytes] | None:
        row = self.one(
            "SELECT header, signature FROM blocks WHERE block_hash = ? LIMIT 1", [block_hash]
        )
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def selected(self, selection: Selection, limit: int) -> list[tuple[int, int, bytes]]:
        """(block_height, leaf_index, envelope) of the selected readings, at most ``limit``."""
        where, params = selection.where()
        rows = self.all(
            f"SELECT block_height, leaf_index, envelope FROM readings WHERE {where} "
            "ORDER BY block_height, leaf_index LIMIT ?",
            [*params, limit + 1],
        )
        return [(int(h), int(i), bytes(e)) for h, i, e in rows]

    def status(self, rate_window_s: float = 60.0) -> dict[str, Any]:
        """Chain height and head, row counts, last block time and the recent ingest rate."""
        counts = self.one(
            "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM rejects), "
            "(SELECT count(*) FROM blocks)"
        )
        assert counts is not None
        head = self.one(
            "SELECT height, block_hash, created_ns, last_received_ns FROM blocks "
            "ORDER BY height DESC LIMIT 1"
        )
        status: dict[str, Any] = {
            "gateway_id": (self.meta("gateway_id") or b"").decode() or None,
            "height": None if head is None else int(head[0]),
            "head_hash": None if head is None else bytes(head[1]).hex(),
            "last_block_ns": None if head is None else int(head[2]),
            "readings": int(counts[0]),
            "rejects": int(counts[1]),
            "blocks": int(counts[2]),
            "ingest_rate_per_s": 0.0,
        }
        if head is not None:
            since = int(head[3]) - int(rate_window_s * 1e9)
            recent = self.one("SELECT count(*) FROM readings WHERE received_ns > ?", [since])
            status["ingest_rate_per_s"] = (
                round(int(recent[0]) / rate_window_s, 3) if recent else 0.0
            )
        return status

    # --- streams -------------------------------------------------------------------

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of a query, fetched CHUNK_ROWS at a time."""
        with converted("read"):
            cursor = self._con.cursor()
        try:
            with converted("read"):
                cursor.execute(sql, list(params))
            while True:
                with converted("read"):
                    rows = cursor.fetchmany(CHUNK_ROWS)
                if not rows:
                    return
                yield from rows
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.close()

    def batches(self, sql: str, params: Sequence[Any], rows: int) -> Iterator[pa.RecordBatch]:
        """Arrow batches of about ``rows`` rows of one query, read as they are consumed.

        One query over a large range costs its planning once (a few ms for the audit's
        queries), where a query per window costs it per window.
        """
        with converted("read"):
            cursor = self._con.cursor()
            _quiet(cursor)
        try:
            with converted("read"):
                relation = cursor.sql(sql, params=list(params))
                assert relation is not None  # a SELECT gives a relation
                stream = relation.to_arrow_reader(rows)
            while True:
                with converted("read"):
                    batch = next(stream, None)
                if batch is None:
                    return
                yield batch
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.close()

    def block_hashes(self, stop: int) -> Iterator[bytes]:
        """Stored block hashes of heights 0..stop-1, in height order."""
        for (value,) in self.stream(
            "SELECT block_hash FROM blocks WHERE height < ? ORDER BY height", [stop]
        ):
            yield bytes(value)
