"""The manifest: an exact account of what one simulator run published.

Written as JSON when the run ends (also when it fails or is interrupted, then with
``"complete": false``), so that a test can compare what was published with what
was stored. Per device: the genuine readings' seqs as ``[first, last]`` ranges and
the number of messages on its topics; per fault kind: how many were injected; for
every fault message its topic, seq and the SHA-256 of its payload, so that a
subscriber can tell each bad message from the genuine ones by digest.
docs/SIMULATORS.md describes every field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.faults import FAULT_KINDS

MANIFEST_VERSION = 1


class DeviceRecord:
    """What one device published: genuine readings by seq, and all its messages."""

    __slots__ = ("asset_id", "kinds", "messages", "model", "readings", "seqs")

    def __init__(self, model: str, asset_id: str) -> None:
        self.model = model
        self.asset_id = asset_id
        self.readings = 0
        self.messages = 0
        self.seqs: list[list[int]] = []  # [first, last] ranges of genuine seqs
        self.kinds: Counter[str] = Counter()

    def add_reading(self, seq: int, kind: str) -> None:
        self.readings += 1
        self.messages += 1
        self.kinds[kind] += 1
        if self.seqs and self.seqs[-1][1] == seq - 1:
            self.seqs[-1][1] = seq
        else:
            self.seqs.append([seq, seq])

    def seq_list(self) -> list[int]:
        return [seq for first, last in self.seqs for seq in range(first, last + 1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "asset_id": self.asset_id,
            "readings": self.readings,
            "messages": self.messages,
            "kinds": dict(sorted(self.kinds.items())),
            "seqs": self.seqs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceRecord:
        record = cls(data["model"], data["asset_id"])
        record.readings = data["readings"]
        record.messages = data["messages"]
        record.kinds = Counter(data["kinds"])
        record.seqs = [list(r) for r in data["seqs"]]
        return record


@dataclass
class Manifest:
    scenario: str
    seed: int
    payload_format: str
    qos: int
    topic_template: str
    started_at_ms: int = 0
    finished_at_ms: int = 0
    complete: bool = False
    error: str | None = None
    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    lag_ms: dict[str, float] = field(default_factory=dict)

    def add_device(self, device_id: str, model: str, asset_id: str) -> DeviceRecord:
        record = DeviceRecord(model, asset_id)
        self.devices[device_id] = record
        return record

    def fault_message(
        self, kind: str, device_id: str, *, seq: int | None, topic: str, payload: bytes, at: float
    ) -> None:
        """A bad (or repeated) message that went out on one of ``device_id``'s topics."""
        self.faults[kind] += 1
        self.devices[device_id].messages += 1
        self.fault_log.append(
            {
                "kind": kind,
                "device_id": device_id,
                "seq": seq,
                "topic": topic,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "bytes": len(payload),
                "at": round(at, 3),
            }
        )

    def fault_action(self, kind: str, device_id: str, at: float, **details: Any) -> None:
        """A fault that is not one message (a burst of genuine readings, a disconnect)."""
        self.faults[kind] += 1
        self.fault_log.append({"kind": kind, "device_id": device_id, "at": round(at, 3), **details})

    @property
    def readings(self) -> int:
        return sum(record.readings for record in self.devices.values())

    @property
    def messages(self) -> int:
        return sum(record.messages for record in self.devices.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "scenario": self.scenario,
            "seed": self.seed,
            "payload_format": self.payload_format,
            "qos": self.qos,
            "topic_template": self.topic_template,
            "started_at_ms": self.started_at_ms,
            "finished_at_ms": self.finished_at_ms,
            "complete": self.complete,
            "error": self.error,
            "totals": {
                "devices": len(self.devices),
                "messages": self.messages,
                "readings": self.readings,
                "fault_messages": self.messages - self.readings,
            },
            "faults": {kind: self.faults[kind] for kind in FAULT_KINDS},
            "lag_ms": self.lag_ms,
            "events": self.events,
            "fault_log": self.fault_log,
            "devices": {key: record.to_dict() for key, record in self.devices.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        version = data.get("manifest_version")
        if version != MANIFEST_VERSION:
            raise ValueError(f"manifest_version {version!r} is not supported (want 1)")
        return cls(
            scenario=data["scenario"],
            seed=data["seed"],
            payload_format=data["payload_format"],
            qos=data["qos"],
            topic_template=data["topic_template"],
            started_at_ms=data["started_at_ms"],
            finished_at_ms=data["finished_at_ms"],
            complete=data["complete"],
            error=data["error"],
            devices={k: DeviceRecord.from_dict(v) for k, v in data["devices"].items()},
            faults=Counter({k: v for k, v in data["faults"].items() if v}),
            fault_log=data["fault_log"],
            events=data["events"],
            lag_ms=data["lag_ms"],
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.from_dict(json.loads(text))

    def write(self, path: Path) -> None:
        """Write atomically: a reader never sees half a manifest."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)
