"""Run a scenario: ask the fleet what is due, publish it, keep count.

Paced (the default), reports go out when the wall clock reaches their schedule and
each message's lag (handed to the client minus scheduled time) is measured, which
shows whether one process keeps up with a fleet. Unpaced, the schedule is run
through as fast as the broker takes it (for load), and readings carry the wall
clock of the moment they were made. The clocks and the random source's seed come
from the caller, so tests can fix them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from simulators.fleet import Drop, Simulation
from simulators.manifest import Manifest
from simulators.progress import ProgressDisplay
from simulators.publisher import Publisher
from simulators.scenario import Scenario
from simulators.signing import load_device_keys

BATCH = 500  # messages handed to the client between yields to the event loop


def wall_ms() -> int:
    """Milliseconds since the Unix epoch, the devices' reference clock."""
    return time.time_ns() // 1_000_000


@dataclass
class LagStats:
    """Scheduling lag per message in a 1 ms histogram (up to 60 s), without keeping every lag."""

    count: int = 0
    max_ms: float = 0.0
    total_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * 60_001)

    def add(self, lag_s: float) -> None:
        lag_ms = max(0.0, lag_s * 1000.0)
        self.count += 1
        self.total_ms += lag_ms
        self.max_ms = max(self.max_ms, lag_ms)
        self.buckets[min(int(lag_ms), 60_000)] += 1

    def percentile(self, p: float) -> float:
        """The lag (ms, bucket upper bound) that ``p`` percent of messages stayed under."""
        if self.count == 0:
            return 0.0
        wanted = p / 100.0 * self.count
        seen = 0
        for ms, n in enumerate(self.buckets):
            seen += n
            if seen >= wanted:
                return float(ms + 1)
        return self.max_ms

    def summary(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        return {
            "mean": round(self.total_ms / self.count, 3),
            "p50": self.percentile(50),
            "p99": self.percentile(99),
            "max": round(self.max_ms, 3),
        }


@dataclass
class RunResult:
    manifest: Manifest
    elapsed_s: float
    lag: LagStats

    @property
    def rate(self) -> float:
        return self.manifest.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def run_scenario(
    scenario: Scenario,
    manifest: Manifest,
    *,
    pace: bool = True,
    progress: ProgressDisplay | None = None,
    clock: Callable[[], float] = time.monotonic,
    now_ms: Callable[[], int] = wall_ms,
) -> RunResult:
    """Publish the scenario to its broker, recording everything in ``manifest``.

    ``manifest`` is filled in as messages are handed over, so a caller that is
    interrupted can still write it (``complete`` stays False until the end).
    """
    start_ms = now_ms()
    manifest.started_at_ms = start_ms
    if pace:

        def ts_ms(due: float) -> int:
            return start_ms + round(due * 1000)

    else:

        def ts_ms(due: float) -> int:
            return now_ms()

    keys = load_device_keys(scenario.device_keys) if scenario.device_keys else None
    sim = Simulation(
        scenario,
        rng=random.Random(scenario.seed),
        ts_ms=ts_ms,
        manifest=manifest,
        device_keys=keys,
    )
    lag = LagStats()
    sent = 0
    async with Publisher(scenario.broker, scenario.qos) as publisher:
        t0 = clock()
        while (due := sim.next_due()) is not None:
            elapsed = clock() - t0
            if pace and due > elapsed:
                await asyncio.sleep(min(due - elapsed, 0.25))
                if progress is not None:
                    progress.update(clock() - t0, sent, sum(manifest.faults.values()), lag.max_ms)
                continue
            actions = sim.take(elapsed if pace else scenario.duration_s, BATCH)
            for action in actions:
                if isinstance(action, Drop):
                    await publisher.drop(action.connection)
                else:
                    publisher.publish(action.connection, action.topic, action.payload)
                    sent += 1
            if pace:
                handed = clock() - t0
                for action in actions:
                    lag.add(handed - action.due)
            await publisher.pace()
            if progress is not None:
                progress.update(clock() - t0, sent, sum(manifest.faults.values()), lag.max_ms)
        await publisher.drain()
        elapsed = clock() - t0
    manifest.finished_at_ms = now_ms()
    manifest.lag_ms = lag.summary()
    manifest.complete = True
    return RunResult(manifest, elapsed, lag)


def new_manifest(scenario: Scenario) -> Manifest:
    return Manifest(
        scenario=scenario.name,
        seed=scenario.seed,
        payload_format=scenario.payload_format,
        qos=scenario.qos,
        topic_template=scenario.topic_template,
    )
