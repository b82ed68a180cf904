"""The gateway's exceptions, one tree, converted from foreign errors at the boundary.

::

    GatewayError                 anything the gateway raises on purpose
    ├── ConfigError              gateway.toml unreadable or a bad value (names the key)
    ├── DecodeError              one payload does not fit the reading schema (names the field)
    ├── StoreError               DuckDB failed; ``duckdb.Error`` is converted inside gateway.store
    │   └── StoreMismatchError   another gateway's store, a newer schema, a broken chain
    └── BrokerConnectError       the MQTT broker refused us for a reason retrying will not fix

A ``DecodeError`` never escapes the pipeline: it becomes a row in the rejects table.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration cannot be used; the message names the file and the key."""


class DecodeError(GatewayError):
    """A payload does not fit the reading schema.

    ``field`` is the schema field at fault (``payload`` for the message as a whole,
    ``topic`` for the topic) and ``problem`` says what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class StoreError(GatewayError):
    """The DuckDB store failed; the message says which operation and why."""


class StoreMismatchError(StoreError):
    """The store cannot be continued by this gateway (another id, newer schema, bad chain)."""


class BrokerConnectError(GatewayError):
    """The broker refused the connection for a reason that retrying will not fix."""
