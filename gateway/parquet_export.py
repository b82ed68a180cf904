"""Parquet export for central analysis: readings by day, the blocks table, idempotently.

Layout of an export directory (docs/REPORTS.md has the reading side)::

    DIR/manifest.json                                  what DIR holds (below)
    DIR/blocks/h<first>-<last>.parquet                 block rows, heights first..last
    DIR/readings/day=YYYY-MM-DD/h<first>-<last>_<i>.parquet
                                                      readings of blocks first..last
                                                      received on that day (UTC)

Files are written by DuckDB's ``COPY ... (FORMAT PARQUET, PARTITION_BY (day))``; the
``day`` column exists only as the Hive-style folder name. Every column of the store is
exported, envelopes, salts and leaf hashes included, so that whoever receives the
export can re-verify it: the chain from the blocks' headers and signatures
(``ledger.verify_chain``), each block's batch root from its readings' leaf hashes.

Readings are exported by whole blocks (``--since`` picks the first block that holds a
reading received at or after it), so each exported block's batch root can be
recomputed. Blocks are always exported from height 0, so the chain can be verified
from genesis whatever ``--since`` is.

Idempotence: ``manifest.json`` records the block heights whose block rows, and those
whose readings, are in DIR, plus every file it owns. A run exports only heights not
yet recorded, so running it twice writes nothing the second time (not even the
manifest). A run writes its files into ``DIR/.incoming``, moves them into place, and
then replaces the manifest atomically (a new directory gets its manifest before any
file); a run that was interrupted before the manifest was written leaves files the
manifest does not list, and the next run deletes them before it starts, so a height
is never exported twice. A non-empty directory without a manifest is refused. The
manifest also records the gateway and the newest exported block's hash: a store of
another gateway, or one whose chain differs from what DIR holds, is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.reader import StoreReader

EXPORT_FORMAT = "anchorgate-parquet/1"
MANIFEST = "manifest.json"
INCOMING = ".incoming"
MAX_ROWS_PER_COPY = 100_000  # readings per COPY statement (and about at most per file)
MAX_RUNS = 100  # the manifest keeps the newest runs' records; its ranges cover them all


class ParquetExportError(GatewayError):
    """The export cannot be made into this directory; the message says why."""


@dataclass(frozen=True, slots=True, order=True)
class HeightRange:
    """Block heights ``first``..``last``, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last:
            raise ValueError(f"bad height range {self.first}..{self.last}")

    @property
    def tag(self) -> str:
        return f"h{self.first:012d}-{self.last:012d}"

    def to_json(self) -> list[int]:
        return [self.first, self.last]


def merge(ranges: Iterable[HeightRange]) -> list[HeightRange]:
    """The same heights as fewest ranges, in order."""
    merged: list[HeightRange] = []
    for r in sorted(ranges):
        if merged and r.first <= merged[-1].last + 1:
            merged[-1] = HeightRange(merged[-1].first, max(merged[-1].last, r.last))
        else:
            merged.append(r)
    return merged


def missing(wanted: HeightRange, done: Sequence[HeightRange]) -> list[HeightRange]:
    """The parts of ``wanted`` that no range in ``done`` covers."""
    out: list[HeightRange] = []
    start = wanted.first
    for r in merge(done):
        if r.last < start or r.first > wanted.last:
            continue
        if r.first > start:
            out.append(HeightRange(start, r.first - 1))
        start = max(start, r.last + 1)
    if start <= wanted.last:
        out.append(HeightRange(start, wanted.last))
    return out


@dataclass
class Manifest:
    gateway_id: str
    blocks: list[HeightRange] = field(default_factory=list)
    readings: list[HeightRange] = field(default_factory=list)
    last_block_hash: str | None = None
    files: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": EXPORT_FORMAT,
            "gateway_id": self.gateway_id,
            "blocks": [r.to_json() for r in self.blocks],
            "readings": [r.to_json() for r in self.readings],
            "last_block_hash": self.last_block_hash,
            "files": sorted(self.files),
            "runs": self.runs,
        }

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            if data.get("format") != EXPORT_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {EXPORT_FORMAT!r}")
            return cls(
                gateway_id=str(data["gateway_id"]),
                blocks=[HeightRange(int(a), int(b)) for a, b in data["blocks"]],
                readings=[HeightRange(int(a), int(b)) for a, b in data["readings"]],
                last_block_hash=data.get("last_block_hash"),
                files=[str(f) for f in data["files"]],
                runs=list(data.get("runs", [])),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ParquetExportError(
                f"{path} is not an anchorgate export manifest: {exc}"
            ) from None

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w") as handle:
            handle.write(json.dumps(self.to_json(), indent=1) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What one run wrote (nothing when everything was already in the directory)."""

    blocks: list[HeightRange]
    readings: list[HeightRange]
    reading_rows: int
    files: list[Path]
    head_height: int | None

    @property
    def wrote_anything(self) -> bool:
        return bool(self.files)


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _clean(directory: Path, manifest: Manifest) -> None:
    """Delete what an interrupted run left: DIR/.incoming and files the manifest omits."""
    shutil.rmtree(directory / INCOMING, ignore_errors=True)
    owned = set(manifest.files)
    for sub in ("blocks", "readings"):
        for path in sorted((directory / sub).rglob("h*.parquet")):
            if path.relative_to(directory).as_posix() not in owned:
                path.unlink()


def _pieces(reader: StoreReader, wanted: HeightRange, rows_per_copy: int) -> list[HeightRange]:
    """``wanted`` cut into runs of whole blocks of about ``rows_per_copy`` readings.

    DuckDB buffers a partitioned COPY's row groups per day: bounded pieces keep its
    memory and the file sizes bounded whatever the length of the range (200 000
    readings: about 270 MB peak resident in one COPY, 180 MB in pieces of 100 000).
    """
    pieces = []
    first, rows = wanted.first, 0
    for height, count in reader.stream(
        "SELECT height, leaf_count FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
        [wanted.first, wanted.last],
    ):
        rows += int(count)
        if rows >= rows_per_copy:
            pieces.append(HeightRange(first, int(height)))
            first, rows = int(height) + 1, 0
    if first <= wanted.last:
        pieces.append(HeightRange(first, wanted.last))
    return pieces


def _check_chain(reader: StoreReader, manifest: Manifest, directory: Path) -> None:
    """The store's chain must continue the one DIR holds."""
    if not manifest.blocks or manifest.last_block_hash is None:
        return
    last = manifest.blocks[-1].last
    row = reader.block(last)
    if row is None or row[2].hex() != manifest.last_block_hash:
        raise ParquetExportError(
            f"{directory} holds block {last} {manifest.last_block_hash[:16]}..., which this "
            "store does not have: it is another chain (export into a new directory)"
        )


def _copy(
    reader: StoreReader,
    incoming: Path,
    blocks: Sequence[HeightRange],
    pieces: Sequence[HeightRange],
) -> int:
    """COPY block rows and readings into ``incoming``; returns the readings written."""
    (incoming / "blocks").mkdir(parents=True)
    for r in blocks:
        target = incoming / "blocks" / f"{r.tag}.parquet"
        reader.all(
            f"COPY (SELECT * FROM blocks WHERE height BETWEEN {r.first} AND {r.last} "
            f"ORDER BY height) TO {_quote(target)} (FORMAT PARQUET)"
        )
    rows = 0
    for r in pieces:
        # The day (UTC) each reading was received, as the partition folder; rows in
        # store order (block height, leaf index), which a plain scan keeps.
        result = reader.all(
            "COPY (SELECT *, strftime(make_timestamp(received_ns // 1000), '%Y-%m-%d') "
            f"AS day FROM readings WHERE block_height BETWEEN {r.first} AND {r.last}) "
            f"TO {_quote(incoming / 'readings')} (FORMAT PARQUET, PARTITION_BY (day), "
            f"FILENAME_PATTERN '{r.tag}_{{i}}', OVERWRITE_OR_IGNORE)"
        )
        rows += int(result[0][0]) if result else 0
    return rows


def _move_into_place(incoming: Path, directory: Path) -> list[Path]:
    written: list[Path] = []
    for path in sorted(incoming.rglob("*.parquet")):
        final = directory / path.relative_to(incoming)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)
        written.append(final)
    shutil.rmtree(incoming, ignore_errors=True)
    return written


def export_parquet(
    reader: StoreReader,
    directory: Path,
    since_ns: int | None = None,
    now: datetime | None = None,
    rows_per_copy: int = MAX_ROWS_PER_COPY,
) -> ExportResult:
    """Export new blocks, and the readings of blocks received since ``since_ns``.

    Readings go out in pieces of whole blocks of about ``rows_per_copy`` readings, one
    COPY (and one file per day) each.
    """
    gateway_id = (reader.meta("gateway_id") or b"").decode()
    manifest_path = directory / MANIFEST
    manifest = Manifest.load(manifest_path) if manifest_path.exists() else None
    if manifest is not None and manifest.gateway_id != gateway_id:
        raise ParquetExportError(
            f"{directory} holds an export of gateway {manifest.gateway_id!r}; this store "
            f"belongs to gateway {gateway_id!r} (one directory per gateway)"
        )
    if manifest is not None:
        _check_chain(reader, manifest, directory)
    head = reader.head_height()
    nothing = ExportResult([], [], 0, [], head)
    if head is None:
        return nothing
    done_blocks = [] if manifest is None else manifest.blocks
    done_readings = [] if manifest is None else manifest.readings
    new_blocks = missing(HeightRange(0, head), done_blocks)
    first = 0
    if since_ns is not None:
        row = reader.one("SELECT min(height) FROM blocks WHERE last_received_ns >= ?", [since_ns])
        first = head + 1 if row is None or row[0] is None else int(row[0])
    new_readings = missing(HeightRange(first, head), done_readings) if first <= head else []
    if not new_blocks and not new_readings:
        return nothing

    try:
        if manifest is None:
            if directory.exists() and any(directory.iterdir()):
                raise ParquetExportError(
                    f"{directory} is not empty and holds no {MANIFEST}: export into a new or "
                    "empty directory"
                )
            # The manifest comes first: files of ours are never in a directory without one.
            directory.mkdir(parents=True, exist_ok=True)
            manifest = Manifest(gateway_id)
            manifest.save(manifest_path)
        _clean(directory, manifest)
        incoming = directory / INCOMING
        pieces = [p for wanted in new_readings for p in _pieces(reader, wanted, rows_per_copy)]
        rows = _copy(reader, incoming, new_blocks, pieces)
        written = _move_into_place(incoming, directory)
        manifest.blocks = merge([*manifest.blocks, *new_blocks])
        manifest.readings = merge([*manifest.readings, *new_readings])
        last = reader.block(manifest.blocks[-1].last)
        manifest.last_block_hash = None if last is None else last[2].hex()
        manifest.files += [p.relative_to(directory).as_posix() for p in written]
        manifest.runs.append(
            {
                "at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
                "since_ns": since_ns,
                "blocks": [r.to_json() for r in new_blocks],
                "readings": [r.to_json() for r in new_readings],
                "reading_rows": rows,
            }
        )
        manifest.runs = manifest.runs[-MAX_RUNS:]
        manifest.save(manifest_path)
    except OSError as exc:
        raise ParquetExportError(f"cannot write the export to {directory}: {exc}") from None
    return ExportResult(new_blocks, new_readings, rows, written, head)
