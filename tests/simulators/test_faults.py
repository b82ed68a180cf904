"""Each fault kind produces exactly its named bad input, when and as often as scheduled."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sim_helpers import EPOCH_MS, scenario, simulate

from simulators.faults import FAULT_KINDS, PAYLOAD_FAULTS, corrupt
from simulators.fleet import Drop, Outgoing
from simulators.manifest import DeviceRecord

TEMP = {"device_id": "hs-00000-tmp", "seq": 7, "ts": EPOCH_MS, "celsius": 41.5, "asset_id": "a"}
LOC = {"device_id": "s-00000-trk", "seq": 8, "ts": EPOCH_MS, "lat": 40.1, "lon": -86.2}
PARAMS = {"bytes": 5000.0, "skew_s": 3600.0}


def decode(data: bytes, fmt: str) -> dict[str, Any]:
    value = json.loads(data) if fmt == "json" else msgpack.unpackb(data, raw=False)
    assert isinstance(value, dict)
    return value


def never_parses(data: bytes, fmt: str) -> bool:
    try:
        decode(data, fmt)
    except (ValueError, msgpack.exceptions.ExtraData, msgpack.exceptions.UnpackException):
        return True
    return False


def check_malformed_json(data: bytes, good: dict[str, Any], fmt: str) -> None:
    assert never_parses(data, "json")
    assert json.dumps(good, separators=(",", ":")).encode().startswith(data)


def check_truncated_msgpack(data: bytes, good: dict[str, Any], fmt: str) -> None:
    assert never_parses(data, "msgpack")
    assert msgpack.packb(good).startswith(data)


def check_wrong_types(data: bytes, good: dict[str, Any], fmt: str) -> None:
    bad = decode(data, fmt)
    changed = [k for k in good if bad[k] != good[k]]
    assert len(changed) == 1
    assert bad[changed[0]] == str(good[changed[0]])


def check_missing_fields(data: bytes, good: dict[str, Any], fmt: str) -> None:
    bad = decode(data, fmt)
    missing = set(good) - set(bad)
    assert len(missing) == 1
    assert missing <= {"seq", "ts", "celsius", "lat", "lon"}


def check_nan_inf(data: bytes, good: dict[str, Any], fmt: str) -> None:
    bad = decode(data, fmt)
    assert any(not math.isfinite(bad[k]) for k in ("celsius", "lat", "lon") if k in bad)


def check_out_of_range(data: bytes, good: dict[str, Any], fmt: str) -> None:
    bad = decode(data, fmt)
    assert (
        not -273.15 <= bad.get("celsius", 0) <= 300
        or not -90 <= bad.get("lat", 0) <= 90
        or not -180 <= bad.get("lon", 0) <= 180
    )


def check_device_mismatch(data: bytes, good: dict[str, Any], fmt: str) -> None:
    bad = decode(data, fmt)
    assert bad["device_id"] == "other-device"
    assert {k: v for k, v in bad.items() if k != "device_id"} == {
        k: v for k, v in good.items() if k != "device_id"
    }


def check_oversized(data: bytes, good: dict[str, Any], fmt: str) -> None:
    assert len(data) >= 5000
    assert decode(data, fmt)["padding"].strip("x") == ""


def check_future_clock(data: bytes, good: dict[str, Any], fmt: str) -> None:
    assert decode(data, fmt)["ts"] == good["ts"] + 3_600_000


CHECKS: dict[str, Callable[[bytes, dict[str, Any], str], None]] = {
    "malformed_json": check_malformed_json,
    "truncated_msgpack": check_truncated_msgpack,
    "wrong_types": check_wrong_types,
    "missing_fields": check_missing_fields,
    "nan_inf": check_nan_inf,
    "out_of_range": check_out_of_range,
    "device_mismatch": check_device_mismatch,
    "oversized": check_oversized,
    "future_clock": check_future_clock,
}


def test_every_payload_fault_has_a_check() -> None:
    assert set(CHECKS) == PAYLOAD_FAULTS
    assert set(FAULT_KINDS) > PAYLOAD_FAULTS


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("good", [TEMP, LOC], ids=["temperature", "location"])
@pytest.mark.parametrize("kind", sorted(PAYLOAD_FAULTS))
def test_payload_faults_make_exactly_their_bad_input(
    kind: Any, good: dict[str, Any], fmt: Any
) -> None:
    rng = random.Random(0)
    for _ in range(30):  # several random choices per kind
        data = corrupt(kind, good, fmt, rng, other_device_id="other-device", params=PARAMS)
        CHECKS[kind](data, good, fmt)


def test_every_schedule_fires_exactly_as_often_as_asked() -> None:
    # hs reports every 0.5 s; a fault every 2 s from 1 s to 9 s fires at 1, 3, 5, 7.
    sc = scenario(
        faults=[
            {"kind": "wrong_types", "group": "hs", "start": 1, "stop": 9, "every": 2},
            {"kind": "duplicate", "every": 1},
            {"kind": "nan_inf", "group": "ship", "probability": 0.25},
        ]
    )
    _, manifest = simulate(sc)
    assert manifest.faults["wrong_types"] == 4
    assert manifest.faults["duplicate"] == 10
    log = [e for e in manifest.fault_log if e["kind"] == "wrong_types"]
    assert all(e["device_id"].startswith("hs-") for e in log)
    # Each fires at the first report at or after its time: within one interval of it.
    for entry, at in zip(log, [1, 3, 5, 7], strict=True):
        assert at <= entry["at"] < at + 0.5
    # 2 trackers x 10 reports: binomial(20, 0.25) is within 0..12 with overwhelming odds,
    # and the seeded run is exact.
    assert 0 < manifest.faults["nan_inf"] <= 12


def test_duplicates_and_replays_repeat_genuine_bytes() -> None:
    sc = scenario(
        groups=[{"name": "hs", "model": "heat_sink", "count": 1, "interval": 0.5}],
        faults=[
            {"kind": "duplicate", "start": 2, "every": 3},
            {"kind": "replay", "start": 5, "every": 100, "age": 4},
        ],
    )
    actions, manifest = simulate(sc)
    payloads = [a.payload for a in actions if isinstance(a, Outgoing)]
    seqs = [json.loads(p)["seq"] for p in payloads]
    repeats = [i for i in range(1, len(seqs)) if seqs[i] <= max(seqs[:i])]
    kinds = [e["kind"] for e in manifest.fault_log]
    assert len(repeats) == len(kinds) == 4
    for i, kind, entry in zip(repeats, kinds, manifest.fault_log, strict=True):
        assert payloads[i] in payloads[:i]  # the very bytes of an earlier genuine reading
        assert seqs[i] == entry["seq"]
        back = 0 if kind == "duplicate" else 4
        assert seqs[i] == seqs[i - 1] - back
    assert Counter(kinds) == {"duplicate": 3, "replay": 1}


def test_burst_sends_extra_genuine_readings_and_disconnect_drops_the_connection() -> None:
    sc = scenario(
        groups=[{"name": "hs", "model": "heat_sink", "count": 2, "interval": 1}],
        faults=[
            {"kind": "burst", "start": 3, "every": 100, "size": 25},
            {"kind": "disconnect", "start": 5, "every": 2},
        ],
        broker={"connections": 2},
    )
    actions, manifest = simulate(sc)
    drops = [a for a in actions if isinstance(a, Drop)]
    assert len(drops) == manifest.faults["disconnect"] == 3  # at 5, 7, 9
    burst = next(e for e in manifest.fault_log if e["kind"] == "burst")
    assert burst["count"] == 25
    record = manifest.devices[burst["device_id"]]
    assert record.seqs == [[0, record.readings - 1]]  # the burst's readings are genuine
    other = next(r for k, r in manifest.devices.items() if k != burst["device_id"])
    assert record.readings == other.readings + 25
    assert manifest.messages == len(actions) - len(drops)


temperature_payloads = st.fixed_dictionaries(
    {
        "device_id": st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        "seq": st.integers(0, 2**40),
        "ts": st.integers(946_684_800_000, 4_102_444_800_000),
        "celsius": st.floats(-100, 300),
    },
    optional={"asset_id": st.text(min_size=1, max_size=30)},
)
location_payloads = st.fixed_dictionaries(
    {
        "device_id": st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        "seq": st.integers(0, 2**40),
        "ts": st.integers(946_684_800_000, 4_102_444_800_000),
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
    },
    optional={"speed_mps": st.floats(0, 60), "accuracy_m": st.floats(0, 100)},
)


@given(
    good=st.one_of(temperature_payloads, location_payloads),
    kind=st.sampled_from(sorted(PAYLOAD_FAULTS)),
    fmt=st.sampled_from(["json", "msgpack"]),
    seed=st.integers(0, 2**32),
)
def test_payload_faults_break_any_reading_in_their_one_way(
    good: dict[str, Any], kind: Any, fmt: Any, seed: int
) -> None:
    data = corrupt(
        kind, good, fmt, random.Random(seed), other_device_id="other-device", params=PARAMS
    )
    CHECKS[kind](data, good, fmt)


@given(st.lists(st.integers(0, 50), unique=True).map(sorted))
def test_seq_ranges_hold_exactly_the_seqs_recorded(seqs: list[int]) -> None:
    record = DeviceRecord("heat_sink", "a")
    for seq in seqs:
        record.add_reading(seq, "temperature")
    assert record.seq_list() == seqs
    assert all(first <= last for first, last in record.seqs)
    assert DeviceRecord.from_dict(record.to_dict()).seqs == record.seqs
