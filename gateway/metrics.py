"""Counters and latencies of a running gateway, written to the health file.

The health file (config ``[health] file``) is JSON, rewritten atomically every
``interval`` seconds and once more at exit, for an operator, a monitoring agent or a
container health check: readings in, stored, rejects, duplicates, blocks, batch
latency, queue depth, connection state, alerts raised and not published.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LATENCY_SAMPLES = 20_000


@dataclass
class Metrics:
    """Mutable counters, updated on the event loop only."""

    started_ns: int = field(default_factory=time.time_ns)
    received: int = 0
    stored: int = 0
    rejects: int = 0
    duplicates: int = 0
    blocks: int = 0
    batches: int = 0
    acked: int = 0
    commit_failures: int = 0
    connects: int = 0
    alerts: int = 0  # recorded in the alerts table
    alerts_unpublished: int = 0  # recorded, but not handed to the broker (not connected)
    checkpoints_unpublished: int = 0  # committed blocks whose checkpoint was not sent
    connected: bool = False
    height: int = 0
    state: str = "starting"
    last_commit_ns: int | None = None
    last_commit_seconds: float = 0.0
    # receive-to-commit latency of recent readings, in seconds
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    @property
    def queue_depth(self) -> int:
        """Messages received and not yet acknowledged or discarded."""
        return self.received - self.acked

    def record_batch(self, received_ns: list[int], committed_ns: int, seconds: float) -> None:
        self.batches += 1
        self.last_commit_ns = committed_ns
        self.last_commit_seconds = seconds
        self.latencies.extend((committed_ns - r) / 1e9 for r in received_ns)

    def latency_quantiles(self) -> dict[str, float | None]:
        ordered = sorted(self.latencies)
        if not ordered:
            return {"p50": None, "p99": None, "max": None}

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

        return {"p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1], 4)}

    def snapshot(self, now_ns: int | None = None) -> dict[str, Any]:
        now_ns = time.time_ns() if now_ns is None else now_ns
        return {
            "state": self.state,
            "connected": self.connected,
            "uptime_s": round((now_ns - self.started_ns) / 1e9, 3),
            "readings_in": self.received,
            "stored": self.stored,
            "rejects": self.rejects,
            "duplicates": self.duplicates,
            "acked": self.acked,
            "queue_depth": self.queue_depth,
            "blocks": self.blocks,
            "height": self.height,
            "batches": self.batches,
            "commit_failures": self.commit_failures,
            "connects": self.connects,
            "alerts": self.alerts,
            "alerts_unpublished": self.alerts_unpublished,
            "checkpoints_unpublished": self.checkpoints_unpublished,
            "last_commit_ns": self.last_commit_ns,
            "last_commit_s": round(self.last_commit_seconds, 4),
            "latency_s": self.latency_quantiles(),
            "pid": os.getpid(),
        }


def write_health(path: Path, snapshot: dict[str, Any]) -> None:
    """Replace ``path`` atomically with the snapshot as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(snapshot, indent=2) + "\n")
    os.replace(tmp, path)
