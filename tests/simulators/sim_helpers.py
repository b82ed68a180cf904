"""Small scenarios built in code, and a fleet run without a broker."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from simulators.fleet import Action, Simulation
from simulators.manifest import Manifest
from simulators.runner import new_manifest
from simulators.scenario import Scenario, scenario_from_mapping

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed device clock for the tests


def scenario(
    *,
    groups: list[dict[str, Any]] | None = None,
    faults: list[dict[str, Any]] = (),  # type: ignore[assignment]
    events: list[dict[str, Any]] = (),  # type: ignore[assignment]
    **top: Any,
) -> Scenario:
    data: dict[str, Any] = {
        "name": "test",
        "duration": 10,
        "seed": 1,
        "groups": groups
        or [
            {"name": "hs", "model": "heat_sink", "count": 3, "interval": 0.5},
            {"name": "tec", "model": "thermoelectric_module", "count": 2, "interval": 1.0},
            {
                "name": "ship",
                "model": "shipment",
                "count": 2,
                "interval": 1.0,
                "route": "chicago-atlanta",
                "lost_fix_probability": 0.1,
            },
        ],
        "faults": list(faults),
        "events": list(events),
        **top,
    }
    return scenario_from_mapping(data, "test scenario", Path("."))


def simulate(sc: Scenario, until: float | None = None) -> tuple[list[Action], Manifest]:
    """Everything a scenario publishes, on a fixed clock, in order."""
    manifest = new_manifest(sc)
    sim = Simulation(
        sc,
        rng=random.Random(sc.seed),
        ts_ms=lambda due: EPOCH_MS + round(due * 1000),
        manifest=manifest,
    )
    actions: list[Action] = []
    while batch := sim.take(sc.duration_s if until is None else until, 10_000):
        actions += batch
    return actions, manifest
