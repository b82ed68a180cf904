"""Sensor simulators: fleets of thermal components and shipment trackers over MQTT.

Modules, from the physics out to the wire:

- :mod:`simulators.thermal`: first-order thermal models of parts under a duty cycle
- :mod:`simulators.routes`, :mod:`simulators.tracker`: routes, journeys, GPS fixes,
  container temperature
- :mod:`simulators.scenario`: TOML scenario files, checked into frozen values
- :mod:`simulators.faults`: each kind of bad input, made on purpose
- :mod:`simulators.fleet`: devices, schedule, events and faults (no I/O)
- :mod:`simulators.manifest`: the exact account of a run
- :mod:`simulators.publisher`, :mod:`simulators.runner`: aiomqtt publishing, pacing
- :mod:`simulators.cli`: ``anchorgate simulate``

The package imports nothing from the gateway except the reading schema
(:mod:`gateway.readings`). docs/SIMULATORS.md is the user's guide.
"""

from simulators.manifest import Manifest
from simulators.runner import new_manifest, run_scenario
from simulators.scenario import Scenario, apply_overrides, load_scenario

__all__ = [
    "Manifest",
    "Scenario",
    "apply_overrides",
    "load_scenario",
    "new_manifest",
    "run_scenario",
]
