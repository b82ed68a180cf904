"""Anchoring: a closed batch becomes salted leaves, a signed block and one store commit.

Runs on the writer thread only (DuckDB and the chain builder are not shared). For each
batch, :meth:`Anchorer.commit`:

1. drops duplicates: the same ``dedup_key`` earlier in the batch, or already stored
   with a receive time inside the duplicate window (see :func:`dedup_key`). The store
   is asked only about readings that could be duplicates: a reading whose ``seq`` is
   above the highest stored for its device and kind is new, and that high-water mark
   is kept in memory (one entry per device and kind), so the usual batch costs no
   lookup however many readings the window holds. Redeliveries (seq at or below the
   mark) and readings without ``seq`` are looked up;
2. wraps each new reading in a ledger envelope with a fresh 16-byte salt and seals the
   leaf hashes into the next block of the chain;
3. checks each new reading against the alert thresholds (gateway.alerts) and writes
   readings, block, rejects, the alerts they raised and the chain head in one
   transaction. The alerts come back in the :class:`Outcome`, to be published only
   after the commit.

If the commit fails, the builder is rebuilt from the last committed chain head, so a
retry seals the same height again. The start-up check of the chain is
:mod:`gateway.chain_check`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.alerts import Alert, Thresholds
from gateway.columns import ColumnData
from gateway.device_auth import ReplayGuard
from gateway.readings import Reading, TemperatureReading
from gateway.schema import ALERTS_COLUMNS, BlockRow
from gateway.store import Store
from ledger import (
    ChainBuilder,
    ChainHead,
    Envelope,
    SealedBlock,
    SigningKey,
)
from ledger import FormatError as LedgerFormatError
from ledger.envelope import envelope_bytes
from ledger.merkle import hash_leaf


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that decoded to a valid reading."""

    topic: str
    payload: bytes
    received_ns: int
    reading: Reading
    payload_format: str
    signed: bool = False  # signed by its device, the signature verified before the commit


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that failed validation; ``field`` and ``reason`` say why."""

    topic: str
    payload: bytes
    received_ns: int
    field: str
    reason: str


Decoded = Accepted | Rejected


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one committed batch did."""

    stored: int
    duplicates: int
    rejects: int
    height: int | None
    committed_ns: int
    alerts: tuple[Alert, ...] = ()
    block: BlockRow | None = None  # the block committed, if the batch made one


def random_salts(count: int) -> list[bytes]:
    """``count`` fresh 16-byte salts from one call to the OS's random source."""
    pool = os.urandom(16 * count)
    return [pool[i : i + 16] for i in range(0, 16 * count, 16)]


def dedup_key(item: Accepted) -> str:
    """``device/kind/seq``, or ``device/kind/#digest`` for a reading without seq.

    The kind is part of the key so that a device may count seq separately per kind.
    """
    reading = item.reading
    if reading.seq is not None:
        return f"{reading.device_id}/{reading.kind}/{reading.seq}"
    digest = hashlib.sha256(item.payload).hexdigest()[:32]
    return f"{reading.device_id}/{reading.kind}/#{digest}"


def _readings_table(
    fresh: Sequence[tuple[Accepted, str]], envelopes: Sequence[bytes], leaves: Sequence[bytes]
) -> dict[str, list[Any]]:
    """The batch's rows for the readings table, column by column (gateway.columns).

    The block height, leaf index and salt are derived by the store (READINGS_DERIVED).
    """
    readings = [item.reading for item, _ in fresh]
    temperature = [isinstance(r, TemperatureReading) for r in readings]

    def location(name: str) -> list[Any]:
        return [None if t else getattr(r, name) for r, t in zip(readings, temperature, strict=True)]

    return {
        "kind": [r.kind for r in readings],
        "device_id": [r.device_id for r in readings],
        "seq": [r.seq for r in readings],
        "ts_ms": [r.ts for r in readings],
        "received_ns": [item.received_ns for item, _ in fresh],
        "topic": [item.topic for item, _ in fresh],
        "asset_id": [r.asset_id for r in readings],
        "celsius": [r.celsius if isinstance(r, TemperatureReading) else None for r in readings],
        "lat": location("lat"),
        "lon": location("lon"),
        "alt_m": location("alt_m"),
        "speed_mps": location("speed_mps"),
        "accuracy_m": location("accuracy_m"),
        "payload_format": [item.payload_format for item, _ in fresh],
        "dedup_key": [key for _, key in fresh],
        "envelope": list(envelopes),
        "leaf_hash": list(leaves),
    }


class Anchorer:
    """Seals batches into the chain and commits them; owns the store on the writer thread."""

    def __init__(
        self,
        store: Store,
        key: SigningKey,
        gateway_id: str,
        *,
        duplicate_window_ns: int,
        clock: Callable[[], int] = time.time_ns,
        salt: Callable[[], bytes] | None = None,
        salts: Callable[[int], list[bytes]] | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.store = store
        self.thresholds = thresholds
        self.key = key
        self.gateway_id = gateway_id
        self.duplicate_window_ns = duplicate_window_ns
        self._clock = clock
        # Tests pass deterministic salts (one at a time with ``salt``, or ``salts(n)``
        # for a batch); the service draws a batch's salts from the OS at once.
        if salts is None:
            salts = random_salts if salt is None else (lambda n: [salt() for _ in range(n)])
        self._salts = salts
        store.claim(gateway_id, key.key_id)
        self._builder = ChainBuilder(gateway_id, key, self._committed_head())
        self._last_received_ns = store.last_received_ns() or 0
        self._stale = False  # a commit failed: rebuild from the store before the next one
        self._high = self._load_high_water()
        self._replays = ReplayGuard(store.highest_seqs(0))

    def _window_start(self) -> int:
        return min(self._last_received_ns, self._clock()) - self.duplicate_window_ns

    def _load_high_water(self) -> dict[tuple[str, str], int]:
        """The highest stored seq per device and kind, within the duplicate window."""
        return self.store.highest_seqs(self._window_start())

    def _resume(self) -> None:
        """Continue from what the store committed, reopening it after a fatal error."""
        if self.store.reopen_failed or self.store.invalidated:
            self.store.reopen()
        self._builder = ChainBuilder(self.gateway_id, self.key, self._committed_head())
        self._last_received_ns = self.store.last_received_ns() or 0
        self._high = self._load_high_water()
        self._replays = ReplayGuard(self.store.highest_seqs(0))
        self._stale = False

    def _committed_head(self) -> ChainHead:
        raw = self.store.chain_head()
        return ChainHead.genesis() if raw is None else ChainHead.from_bytes(raw)

    @property
    def head(self) -> ChainHead:
        """The head the next block continues from."""
        if self._stale:
            self._resume()
        return self._builder.head

    def commit(self, items: Sequence[Decoded]) -> Outcome:
        """Anchor and store one batch; raises StoreError with nothing committed."""
        if self._stale or self.store.reopen_failed:
            self._resume()
        try:
            return self._commit(items)
        except BaseException:
            # Nothing was committed (a duplicate lookup or the write failed): the next
            # commit reopens the store if it must and continues from the committed head.
            self._stale = True
            raise

    def _commit(self, items: Sequence[Decoded]) -> Outcome:
        fresh: list[tuple[Accepted, str]] = []
        seen: dict[str, bytes] = {}
        rejects: list[dict[str, Any]] = []
        duplicates = 0
        for item in items:
            if isinstance(item, Rejected):
                rejects.append(_reject_row(item, item.field, item.reason))
                continue
            key = dedup_key(item)
            if key in seen:
                if item.signed and seen[key] != item.payload:
                    rejects.append(_replay_row(item, -1, conflict=True))
                else:
                    duplicates += 1
                continue
            seen[key] = item.payload
            fresh.append((item, key))
        high = self._high
        suspects = [
            key
            for item, key in fresh
            if (seq := item.reading.seq) is None
            or seq <= high.get((item.reading.device_id, item.reading.kind), -1)
        ]
        if suspects:
            stored = self.store.existing_keys(suspects, self._window_start())
            if stored:
                conflicts = self._conflicts(fresh, stored)
                for item, key in fresh:
                    if key in conflicts:
                        rejects.append(_replay_row(item, -1, conflict=True))
                    elif key in stored:
                        duplicates += 1
                fresh = [(item, key) for item, key in fresh if key not in stored]
        if any(item.signed for item, _ in fresh):
            fresh = self._drop_replays(fresh, rejects)
        table: dict[str, list[Any]] | None = None
        block: BlockRow | None = None
        height: int | None = None
        alerts: list[Alert] = []
        if fresh:
            salts = self._salts(len(fresh))
            envelopes = [
                envelope_bytes(item.topic, item.payload, item.received_ns, salt)
                for (item, _), salt in zip(fresh, salts, strict=True)
            ]
            leaves = [hash_leaf(data) for data in envelopes]
            first_ns = min(item.received_ns for item, _ in fresh)
            last_ns = max(item.received_ns for item, _ in fresh)
            sealed = self._builder.seal(leaves, first_ns, last_ns, self._clock())
            height = sealed.header.height
            table = _readings_table(fresh, envelopes, leaves)
            block = block_row(sealed)
            if self.thresholds is not None:
                alerts = self._alerts(fresh, height, sealed.header.created_ns)
        self.store.commit_batch(
            table if table is not None else [], block, rejects, _alerts_table(alerts)
        )
        if block is not None:
            self._last_received_ns = max(self._last_received_ns, block.last_received_ns)
            for item, _ in fresh:
                reading = item.reading
                if reading.seq is not None:
                    mark = (reading.device_id, reading.kind)
                    if reading.seq > high.get(mark, -1):
                        high[mark] = reading.seq
                    self._replays.advance(reading.device_id, reading.kind, reading.seq)
        return Outcome(
            stored=len(fresh) if table is not None else 0,
            duplicates=duplicates,
            rejects=len(rejects),
            height=height,
            committed_ns=self._clock(),
            alerts=tuple(alerts),
            block=block,
        )

    def _conflicts(self, fresh: Sequence[tuple[Accepted, str]], stored: set[str]) -> set[str]:
        """Keys of signed readings stored with another payload: the same seq, signed twice."""
        signed = {key: item.payload for item, key in fresh if item.signed and key in stored}
        if not signed:
            return set()
        envelopes = self.store.stored_envelopes(list(signed), self._window_start())
        conflicts = set()
        for key, envelope in envelopes.items():
            try:
                same = Envelope.from_bytes(envelope).payload == signed[key]
            except LedgerFormatError:
                same = False  # an unreadable stored envelope is audit's business
            if not same:
                conflicts.add(key)
        return conflicts

    def _drop_replays(
        self, fresh: list[tuple[Accepted, str]], rejects: list[dict[str, Any]]
    ) -> list[tuple[Accepted, str]]:
        """Signed readings whose seq is not above the last stored (or earlier in the batch)."""
        kept: list[tuple[Accepted, str]] = []
        batch_marks: dict[tuple[str, str], int] = {}
        for item, key in fresh:
            reading = item.reading
            if item.signed and reading.seq is not None:
                mark_key = (reading.device_id, reading.kind)
                mark = max(self._replays.mark(*mark_key), batch_marks.get(mark_key, -1))
                if reading.seq <= mark:
                    rejects.append(_replay_row(item, mark, conflict=False))
                    continue
                batch_marks[mark_key] = reading.seq
            kept.append((item, key))
        return kept

    def _alerts(
        self, fresh: Sequence[tuple[Accepted, str]], height: int, created_ns: int
    ) -> list[Alert]:
        """The alerts the batch's new readings raise; leaf index = position in ``fresh``."""
        assert self.thresholds is not None
        alerts: list[Alert] = []
        check = self.thresholds.alerts
        for index, (item, _) in enumerate(fresh):
            if item.reading.asset_id is not None:
                alerts += check(
                    self.gateway_id, item.reading, height, index, item.received_ns, created_ns
                )
        return alerts


def block_row(sealed: SealedBlock) -> BlockRow:
    """The blocks table row of a sealed block."""
    header = sealed.header
    return BlockRow(
        height=header.height,
        block_hash=sealed.block_hash,
        prev_hash=header.prev_hash,
        batch_root=header.batch_root,
        leaf_count=header.leaf_count,
        first_received_ns=header.first_received_ns,
        last_received_ns=header.last_received_ns,
        created_ns=header.created_ns,
        key_id=header.key_id,
        header=sealed.header_bytes,
        signature=sealed.signature,
        head_after=sealed.head_after.to_bytes(),
    )


def _reject_row(item: Accepted | Rejected, field: str, reason: str) -> dict[str, Any]:
    return {
        "received_ns": item.received_ns,
        "topic": item.topic,
        "payload": item.payload,
        "field": field,
        "reason": reason,
    }


def _replay_row(item: Accepted, mark: int, *, conflict: bool) -> dict[str, Any]:
    reading = item.reading
    seq = reading.seq if reading.seq is not None else -1
    reason = ReplayGuard.reason(reading.device_id, reading.kind, seq, mark, conflict)
    return _reject_row(item, "seq", reason)


def _alerts_table(alerts: Sequence[Alert]) -> ColumnData:
    return {name: [getattr(alert, name) for alert in alerts] for name, _ in ALERTS_COLUMNS}
