"""The simulators' exceptions, one tree.

::

    SimulatorError
    ├── ScenarioError   a scenario file, route file or flag is wrong; the message names
    │                   the file or flag, the field and the problem
    └── PublishError    the broker could not be reached, refused us or dropped us

The command line turns a :class:`ScenarioError` into a one-line usage error (exit 2)
and a :class:`PublishError` into a one-line failure (exit 1).
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error the simulators raise on purpose."""


class ScenarioError(SimulatorError):
    """A scenario or route is wrong; the message says where and why."""


class PublishError(SimulatorError):
    """Publishing over MQTT failed."""
