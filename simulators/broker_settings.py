"""How the simulators connect to the broker: the ``[broker]`` table's checked values.

The same transport rules as the gateway (:mod:`gateway.mqtt_tls`): TLS verifies the
broker's certificate and host name, mutual TLS adds a client certificate, and plain
TCP to another machine needs ``allow_insecure``. The password comes from the scenario,
an environment variable or a file (:func:`read_password`), never from a default.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from gateway.config_load import check_private_file, read_secret_file
from gateway.errors import ConfigError
from gateway.mqtt_tls import TlsFileError, client_context, is_loopback
from simulators.errors import ScenarioError

_TLS_KEYS = {"ca": "ca_file", "cert": "cert_file", "key": "key_file"}
T = TypeVar("T")


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect; ``connections`` clients share the fleet's devices.

    TLS is on with ``tls`` or any of the three files; the broker's certificate must
    chain to ``ca_file`` (or the system CAs) and name ``host``. Plain TCP to a host
    that is not loopback needs ``allow_insecure`` (the same rule as the gateway's).
    ``password`` is the resolved secret (from ``password_env``/``password_file``).
    """

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    allow_insecure: bool = False
    client_id: str = "anchorgate-sim"
    connections: int = 1
    keepalive: int = 30
    inflight: int = 100
    protocol: Literal["5", "3.1.1"] = "5"  # "3.1.1": a broker without MQTT 5

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ScenarioError("[broker]: 'cert_file' and 'key_file' go together")
        if not (self.uses_tls or self.allow_insecure or is_loopback(self.host)):
            raise ScenarioError(
                f"[broker]: 'host' {self.host!r} is not a loopback address and TLS is off, "
                "so the password and readings would cross the network in clear: set "
                "ca_file or tls = true (--ca-file, --tls), or allow_insecure = true "
                "(--allow-insecure) to accept that"
            )

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    @property
    def insecure(self) -> bool:
        """Plain TCP to another machine (allowed by ``allow_insecure``; worth a warning)."""
        return not self.uses_tls and not is_loopback(self.host)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS client context, None without TLS; a bad file is a ScenarioError."""
        if not self.uses_tls:
            return None
        if self.key_file is not None:
            _as_scenario_error(check_private_file, self.key_file, "[broker]: 'key_file'")
        try:
            return client_context(self.ca_file, self.cert_file, self.key_file)
        except TlsFileError as exc:
            raise ScenarioError(f"[broker]: {_TLS_KEYS[exc.role]!r} {exc.problem}") from None


def read_password(
    env_name: str | None,
    file: Path | None,
    environ: Mapping[str, str],
    names: tuple[str, str] = ("password_env", "password_file"),
) -> str | None:
    """The password from an environment variable or a file (its first line), or None."""
    if env_name is not None and file is not None:
        raise ScenarioError(f"{names[0]!r} and {names[1]!r}: give one, not both")
    if env_name is not None:
        if env_name not in environ:
            raise ScenarioError(f"{names[0]!r}: the environment variable {env_name} is not set")
        return environ[env_name]
    if file is not None:
        return _as_scenario_error(read_secret_file, file, repr(names[1]))
    return None


def _as_scenario_error(read: Callable[[Path, str], T], path: Path, key: str) -> T:
    """``read(path, key)``, a check of gateway.config_load, its ConfigError a ScenarioError.

    A simulator stands in for devices: their key and password files get the gateway's
    care (readable by their owner only).
    """
    try:
        return read(path, key)
    except ConfigError as exc:
        raise ScenarioError(str(exc)) from None
