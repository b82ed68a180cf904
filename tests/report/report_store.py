"""A real store with hand-made readings whose report figures are known in advance.

Written through the gateway's own decoder and anchorer (no MQTT), as the auditor tests
do. Every figure a test checks follows from the constants here:

- SHIP-1, a shipment: ``reefer-9`` reports a temperature every minute (seq 0..29, with
  seq 10 and 11 missing), ``tracker-9`` a position every minute (seq 0..19) north
  along the meridian 13° E, standing still for seven minutes in the middle;
- HS-1, a component: ``hs-1`` reports a temperature every 10 s, no position;
- LONE-1 (one temperature reading) and TRK-1 (one position, no temperature).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.anchor import Accepted, Anchorer
from gateway.config import LimitsSection
from gateway.decode import Decoder, detect_format
from gateway.readings import LocationReading, Reading, TemperatureReading, encode_reading, topic_for
from gateway.store import Store
from ledger import SigningKey

T0_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z
MINUTE_MS = 60_000
GATEWAY_ID = "gw-report"
BATCH = 16

# reefer-9: seq -> °C; 5.0 unless listed. Above 8: seq 5..7; below 2: seq 20..21; the
# last reading (seq 29) is above 8 again, so that excursion is still going on.
REEFER_SPECIAL = {5: 9.0, 6: 10.5, 7: 8.5, 20: 1.0, 21: 1.5, 29: 9.5}
REEFER_MISSING = {10, 11}
REEFER_SEQS = [s for s in range(30) if s not in REEFER_MISSING]

# tracker-9: 0.01° north per minute, except fixes 8..15 which stand at 52.08° N
# (fixes 9..14 jitter 0.0005° east and west: GPS noise while standing).
STOP_FIRST, STOP_LAST = 8, 15
TRACKER_FIXES = 20

# hs-1: one reading every 10 s; above 85 °C for readings 3..5.
HS_CELSIUS = [60.0, 70.0, 80.0, 86.0, 90.0, 85.5, 80.0, 75.0, 70.0, 65.0, 60.0, 55.0]


def reefer_celsius(seq: int) -> float:
    return REEFER_SPECIAL.get(seq, 5.0)


def tracker_position(k: int) -> tuple[float, float]:
    if k <= STOP_FIRST:
        lat = 52.0 + 0.01 * k
    elif k <= STOP_LAST:
        lat = 52.08
    else:
        lat = 52.08 + 0.01 * (k - STOP_LAST)
    lon = 13.0
    if STOP_FIRST < k < STOP_LAST:
        lon += 0.0005 if k % 2 else -0.0005
    return round(lat, 6), lon


def readings() -> list[Reading]:
    out: list[Reading] = []
    for seq in REEFER_SEQS:
        out.append(
            TemperatureReading(
                "reefer-9", seq, T0_MS + seq * MINUTE_MS, reefer_celsius(seq), "SHIP-1"
            )
        )
    for k in range(TRACKER_FIXES):
        lat, lon = tracker_position(k)
        out.append(
            LocationReading("tracker-9", k, T0_MS + k * MINUTE_MS + 1, lat, lon, asset_id="SHIP-1")
        )
    for n, celsius in enumerate(HS_CELSIUS):
        out.append(TemperatureReading("hs-1", n, T0_MS + n * 10_000, celsius, "HS-1"))
    # Edge cases: a component with one reading, a tracker with one fix and no temperature.
    out.append(TemperatureReading("lone-1", 0, T0_MS, 20.0, "LONE-1"))
    out.append(LocationReading("tracker-7", 0, T0_MS, 48.0, 11.0, asset_id="TRK-1"))
    return sorted(out, key=lambda r: (r.ts, r.device_id))


def received_ns(reading: Reading) -> int:
    """The gateway receives each reading half a second after its sensor time."""
    return (reading.ts + 500) * 1_000_000


@dataclass(frozen=True)
class ReportStore:
    path: Path
    key: SigningKey
    public_key_path: Path
    readings: int


def anchor(path: Path, key: SigningKey, items: Sequence[Reading], batch: int = BATCH) -> None:
    """Decode and anchor ``items`` (in order) into the store at ``path``, ``batch`` at a time."""
    salts = itertools.count()
    decoder = Decoder(LimitsSection())
    last_ns = max(received_ns(r) for r in items)
    with Store.open(path) as store:
        anchorer = Anchorer(
            store,
            key,
            GATEWAY_ID,
            duplicate_window_ns=10**12,
            clock=lambda: last_ns + 10**9,
            salts=lambda n: [next(salts).to_bytes(16, "big") for _ in range(n)],
        )
        for start in range(0, len(items), batch):
            accepted = []
            for n, reading in enumerate(items[start : start + batch]):
                payload = encode_reading(reading, "msgpack" if n % 3 == 2 else "json")
                topic = topic_for(reading.device_id, reading.kind)
                at = received_ns(reading)
                decoded = decoder.decode(topic, payload, at)
                accepted.append(Accepted(topic, payload, at, decoded, detect_format(payload)))
            anchorer.commit(accepted)


def signing_key() -> SigningKey:
    return SigningKey.from_seed(bytes(range(1, 33)))


def make_report_store(directory: Path) -> ReportStore:
    directory.mkdir(parents=True, exist_ok=True)
    key = signing_key()
    public_key_path = directory / "gateway.pub"
    key.public_key.save(public_key_path)
    path = directory / "gateway.duckdb"
    all_readings = readings()
    anchor(path, key, all_readings)
    return ReportStore(path, key, public_key_path, len(all_readings))
