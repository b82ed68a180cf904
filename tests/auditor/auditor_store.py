"""Real DuckDB stores for the auditor tests, written through the gateway's own anchorer."""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway.anchor import Accepted, Anchorer
from gateway.config import LimitsSection
from gateway.decode import Decoder, detect_format
from gateway.readings import (
    LocationReading,
    PayloadFormat,
    TemperatureReading,
    encode_reading,
    topic_for,
)
from gateway.store import Store
from ledger import SigningKey

T0_NS = 1_764_000_000_000_000_000
GATEWAY_ID = "gw-audit"


@dataclass
class Made:
    path: Path
    key: SigningKey
    public_key_path: Path
    blocks: int
    readings: int

    def copy_to(self, directory: Path) -> Made:
        """The same store in another file, to edit without touching this one."""
        path = directory / "gateway.duckdb"
        shutil.copy(self.path, path)
        return Made(path, self.key, self.public_key_path, self.blocks, self.readings)


def readings_for(batch: int) -> list[TemperatureReading | LocationReading]:
    """Seven readings per batch: two shipments' temperatures and one tracker's position."""
    ts = T0_NS // 1_000_000 + batch * 1000
    out: list[TemperatureReading | LocationReading] = []
    for i in range(3):
        out.append(TemperatureReading("reefer-1", batch * 3 + i, ts + i, 4.0 + i / 10, "SHIP-1"))
        out.append(TemperatureReading("reefer-2", batch * 3 + i, ts + i, 6.5 - i / 10, "SHIP-2"))
    out.append(LocationReading("tracker-1", batch, ts, 52.5 + batch / 100, 13.4, asset_id="SHIP-1"))
    return out


def make_store(directory: Path, batches: int = 12, *, close: bool = True) -> Made:
    directory.mkdir(parents=True, exist_ok=True)
    key = SigningKey.from_seed(bytes(range(32)))
    public_key_path = directory / "gateway.pub"
    key.public_key.save(public_key_path)
    path = directory / "gateway.duckdb"
    store = Store.open(path)
    clock = itertools.count(T0_NS, 1_000_000)
    salts = itertools.count()
    anchorer = Anchorer(
        store,
        key,
        GATEWAY_ID,
        duplicate_window_ns=10**12,
        clock=lambda: next(clock) + 10**9,
        salts=lambda n: [next(salts).to_bytes(16, "big") for _ in range(n)],
    )
    decoder = Decoder(LimitsSection())
    total = 0
    for batch in range(batches):
        items = []
        for n, reading in enumerate(readings_for(batch)):
            fmt: PayloadFormat = "msgpack" if n % 3 == 2 else "json"
            payload = encode_reading(reading, fmt)
            topic = topic_for(reading.device_id, reading.kind)
            received = T0_NS + batch * 10**9 + n * 1000
            items.append(
                Accepted(
                    topic,
                    payload,
                    received,
                    decoder.decode(topic, payload, received),
                    detect_format(payload),
                )
            )
        outcome = anchorer.commit(items)
        total += outcome.stored
    if close:
        store.close()
    return Made(path, key, public_key_path, batches, total)


def payload_json(reading: TemperatureReading) -> bytes:
    return json.dumps(reading.to_payload()).encode()
