"""The gateway's configuration: config/gateway.toml read with tomllib into frozen values.

Every section is a frozen dataclass whose fields are the TOML keys, with the defaults
the shipped config/gateway.toml documents; each checks its values and names the key
of a bad one (``mqtt.port``). :mod:`gateway.config_load` reads the file.
Relative paths are taken relative to the working directory. The broker password is
never read from the TOML: ``mqtt.password_env`` names an environment variable and
``mqtt.password_file`` a file that hold it. TLS files are read and checked at load
(:meth:`MqttSection.ssl_context`), and plain TCP to a broker that is not on this
machine is refused unless ``mqtt.allow_insecure`` says so. ``[alerts]`` holds nested
tables (asset kinds, per-asset overrides, regions); :mod:`gateway.alerts` parses it.
"""

from __future__ import annotations

import math
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.alerts_config import AlertsSection
from gateway.errors import ConfigError
from gateway.mqtt_tls import TlsFileError, client_context, is_loopback
from gateway.readings import DEFAULT_TOPIC_TEMPLATE
from ledger.envelope import MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES

MAX_RECEIVE_MAXIMUM = 65535  # MQTT 5 section 3.1.2.11.3: a two-byte integer
MAX_SESSION_EXPIRY = 0xFFFFFFFF  # MQTT 5: "never expires"
MAX_PACKET_BYTES = 268_435_455  # MQTT 5 section 2.1.4: the largest Remaining Length
# A PUBLISH packet's bytes besides topic and payload: fixed header (up to 5), topic
# length (2), packet id (2), properties (their length, and what the broker adds).
PUBLISH_OVERHEAD = 64


class InvalidValue(ValueError):
    """A value check failed inside a section; the loader adds the section name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _require(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise InvalidValue(key, problem)


@dataclass(frozen=True)
class GatewaySection:
    id: str = "gw-01"
    key_file: Path = Path("keys/gateway.key")
    checkpoint_topic: str = "anchorgate/checkpoints/{gateway_id}"

    def __post_init__(self) -> None:
        _require(
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", self.id) is not None,
            "id",
            "must be 1 to 64 letters, digits or _ . : - starting with a letter or digit",
        )
        rest = self.checkpoint_topic.replace("{gateway_id}", "")
        _require(
            re.search(r"[+#{}\x00]", rest) is None and not rest.startswith("$"),
            "checkpoint_topic",
            "must be an MQTT topic without + # or a leading $; {gateway_id} is the only "
            "placeholder",
        )

    @property
    def checkpoints(self) -> str | None:
        """The topic checkpoints go to, or None when they are off (empty topic)."""
        return self.checkpoint_topic.replace("{gateway_id}", self.id) or None


@dataclass(frozen=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str = ""
    password_env: str = ""
    password_file: Path | None = None
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_insecure: bool = False
    keepalive: int = 30
    session_expiry: int = 7 * 24 * 3600
    receive_maximum: int = 2000
    # MQTT 5 Maximum Packet Size: the broker drops larger messages instead of sending
    # them, so that a hostile sender cannot make us hold megabytes per message.
    max_packet_bytes: int = 16384
    topics: tuple[str, ...] = ()
    topic_template: str = DEFAULT_TOPIC_TEMPLATE
    shared_group: str = ""
    reconnect_min_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    # "3.1.1" for a broker without MQTT 5 (the demo's embedded one): no properties;
    # session_expiry > 0 becomes clean_session=false.
    protocol: Literal["5", "3.1.1"] = "5"
    # Filled in by the loader from password_env / password_file, never from the TOML.
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _require(bool(self.host), "host", "must not be empty")
        _require(0 < self.port < 65536, "port", "must be between 1 and 65535")
        _require(len(self.client_id) <= 128, "client_id", "must be at most 128 characters")
        _require(5 <= self.keepalive <= 65535, "keepalive", "must be between 5 and 65535 s")
        _require(
            0 <= self.session_expiry <= MAX_SESSION_EXPIRY,
            "session_expiry",
            f"must be between 0 and {MAX_SESSION_EXPIRY} s",
        )
        _require(
            0 < self.receive_maximum <= MAX_RECEIVE_MAXIMUM,
            "receive_maximum",
            f"must be between 1 and {MAX_RECEIVE_MAXIMUM}",
        )
        _require(
            1024 <= self.max_packet_bytes <= MAX_PACKET_BYTES,
            "max_packet_bytes",
            f"must be between 1024 and {MAX_PACKET_BYTES}",
        )
        for topic in self.topics:
            _require(
                bool(topic) and not topic.startswith("$share/"),
                "topics",
                f"{topic!r} is not a plain topic filter (use shared_group for $share)",
            )
        _require(
            "{device_id}" in self.topic_template and "{kind}" in self.topic_template,
            "topic_template",
            "must contain {device_id} and {kind}",
        )
        _require(
            re.fullmatch(r"[^/+#]*", self.shared_group) is not None,
            "shared_group",
            "must not contain / + or #",
        )
        _require(self.reconnect_min_delay > 0, "reconnect_min_delay", "must be more than 0 s")
        _require(
            self.reconnect_max_delay >= self.reconnect_min_delay,
            "reconnect_max_delay",
            "must be at least reconnect_min_delay",
        )
        _require(
            (self.tls_cert_file is None) == (self.tls_key_file is None),
            "tls_key_file",
            "tls_cert_file and tls_key_file go together",
        )
        _require(
            self.uses_tls or self.allow_insecure or is_loopback(self.host),
            "host",
            f"{self.host!r} is not a loopback address and TLS is off, so the password and "
            "the readings would cross the network in clear: set mqtt.tls_ca_file (or "
            "mqtt.tls = true) to use TLS, or mqtt.allow_insecure = true to accept that",
        )

    @property
    def uses_tls(self) -> bool:
        """TLS is on: ``tls = true`` or any of the TLS files set."""
        return self.tls or self.tls_ca_file is not None or self.tls_cert_file is not None

    @property
    def insecure(self) -> bool:
        """Plain TCP to another machine, allowed by ``allow_insecure`` (worth a warning)."""
        return not self.uses_tls and not is_loopback(self.host)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS client context (None without TLS); a bad file is a ConfigError naming it."""
        if not self.uses_tls:
            return None
        try:
            return client_context(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        except TlsFileError as exc:
            key = {"ca": "tls_ca_file", "cert": "tls_cert_file", "key": "tls_key_file"}[exc.role]
            raise ConfigError(f"mqtt.{key}: {exc.problem}") from None

    @property
    def topic_filters(self) -> tuple[str, ...]:
        """The filters to subscribe to: ``topics``, or the template with ``+`` wildcards."""
        filters = self.topics or (self.topic_template.format(device_id="+", kind="+"),)
        if self.shared_group:
            return tuple(f"$share/{self.shared_group}/{f}" for f in filters)
        return filters


@dataclass(frozen=True)
class LimitsSection:
    max_payload_bytes: int = 4096
    max_topic_bytes: int = 256
    max_depth: int = 8
    max_container_items: int = 64
    celsius_min: float = -100.0
    celsius_max: float = 300.0
    max_clock_skew: float = 300.0
    min_ts: int = 946684800000  # 2000-01-01T00:00:00Z in ms
    max_altitude_m: float = 20000.0
    min_altitude_m: float = -500.0
    max_speed_mps: float = 350.0
    max_accuracy_m: float = 100000.0
    device_id_pattern: str = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
    asset_id_pattern: str = r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}"

    def __post_init__(self) -> None:
        _require(
            16 <= self.max_payload_bytes <= MAX_PAYLOAD_BYTES,
            "max_payload_bytes",
            f"must be between 16 and {MAX_PAYLOAD_BYTES} (the leaf envelope's limit)",
        )
        _require(
            1 <= self.max_topic_bytes <= MAX_TOPIC_BYTES,
            "max_topic_bytes",
            f"must be between 1 and {MAX_TOPIC_BYTES} (MQTT's limit on a topic name)",
        )
        _require(1 <= self.max_depth <= 64, "max_depth", "must be between 1 and 64")
        _require(
            1 <= self.max_container_items <= 65535,
            "max_container_items",
            "must be between 1 and 65535",
        )
        for name in ("celsius_min", "celsius_max", "max_clock_skew", "max_altitude_m"):
            _require(math.isfinite(getattr(self, name)), name, "must be a finite number")
        _require(self.celsius_min < self.celsius_max, "celsius_max", "must exceed celsius_min")
        _require(self.max_clock_skew >= 0, "max_clock_skew", "must not be negative")
        _require(self.min_altitude_m < self.max_altitude_m, "max_altitude_m", "must exceed min")
        _require(self.max_speed_mps > 0, "max_speed_mps", "must be more than 0")
        _require(self.max_accuracy_m > 0, "max_accuracy_m", "must be more than 0")
        for name in ("device_id_pattern", "asset_id_pattern"):
            try:
                re.compile(getattr(self, name))
            except re.error as exc:
                raise InvalidValue(name, f"is not a regular expression: {exc}") from None


@dataclass(frozen=True)
class BatchSection:
    max_readings: int = 1000
    max_delay: float = 1.0

    def __post_init__(self) -> None:
        _require(
            1 <= self.max_readings <= MAX_RECEIVE_MAXIMUM,
            "max_readings",
            f"must be between 1 and {MAX_RECEIVE_MAXIMUM}",
        )
        _require(0 < self.max_delay <= 3600, "max_delay", "must be more than 0 and at most 3600 s")


@dataclass(frozen=True)
class StoreSection:
    path: Path = Path("data/anchorgate.duckdb")
    duplicate_window: float = 3600.0
    memory_limit: str = "24MB"
    threads: int = 1
    verify_blocks_on_start: int = 3

    def __post_init__(self) -> None:
        _require(self.duplicate_window >= 0, "duplicate_window", "must not be negative")
        size = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(MB|GB|MiB|GiB)", self.memory_limit)
        _require(size is not None, "memory_limit", "must be a size like '32MB' or '1GiB'")
        assert size is not None
        megabytes = float(size[1]) * (1000 if size[2].startswith("G") else 1)
        _require(megabytes >= 24, "memory_limit", "must be at least 24MB (DuckDB checkpoints)")
        _require(1 <= self.threads <= 64, "threads", "must be between 1 and 64")
        _require(self.verify_blocks_on_start >= 0, "verify_blocks_on_start", "must not be negative")


@dataclass(frozen=True)
class HealthSection:
    file: Path | None = Path("data/health.json")
    interval: float = 5.0

    def __post_init__(self) -> None:
        _require(0 < self.interval <= 3600, "interval", "must be more than 0 and at most 3600 s")


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class ApiSection:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8787
    unix_socket: Path | None = None
    token_env: str = ""
    token_file: Path | None = None
    # Filled in by the loader from token_env / token_file, never from the TOML.
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _require(1 <= self.port <= 65535, "port", "must be between 1 and 65535")
        _require(
            not (self.token_env and self.token_file is not None),
            "token_file",
            "set token_env or token_file, not both",
        )
        _require(
            self.host in _LOOPBACK or bool(self.token_env) or self.token_file is not None,
            "host",
            f"{self.host!r} is not a loopback address: binding it needs a bearer token "
            "(set token_env or token_file), or use 127.0.0.1, ::1, localhost or unix_socket",
        )
        if self.token is not None:
            _require(
                len(self.token) >= MIN_TOKEN_LENGTH and self.token.isprintable(),
                "token_env" if self.token_env else "token_file",
                f"the token must be at least {MIN_TOKEN_LENGTH} printable characters "
                "(e.g. from: python -c 'import secrets; print(secrets.token_urlsafe())')",
            )

    @property
    def url(self) -> str:
        """Where the CLI finds the API: http://HOST:PORT or unix:/PATH."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class DevicesSection:
    """Device authenticity (gateway.devices, gateway.device_auth)."""

    registry: Path | None = None
    require_signature: bool = False
    verify_processes: int = 0

    def __post_init__(self) -> None:
        _require(
            0 <= self.verify_processes <= 64,
            "verify_processes",
            "must be between 0 (a thread) and 64",
        )
        _require(
            self.registry is not None or not self.require_signature,
            "require_signature",
            "needs a device registry (devices.registry) to check signatures against",
        )


@dataclass(frozen=True)
class LogSection:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    batch: BatchSection = field(default_factory=BatchSection)
    store: StoreSection = field(default_factory=StoreSection)
    health: HealthSection = field(default_factory=HealthSection)
    api: ApiSection = field(default_factory=ApiSection)
    log: LogSection = field(default_factory=LogSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    devices: DevicesSection = field(default_factory=DevicesSection)

    def __post_init__(self) -> None:
        largest = self.limits.max_payload_bytes + self.limits.max_topic_bytes + PUBLISH_OVERHEAD
        if self.mqtt.max_packet_bytes < largest:
            raise ConfigError(
                f"mqtt.max_packet_bytes ({self.mqtt.max_packet_bytes}) must be at least "
                f"limits.max_payload_bytes + limits.max_topic_bytes + {PUBLISH_OVERHEAD} "
                f"({largest}), otherwise the broker would drop readings the gateway accepts"
            )
        if self.mqtt.receive_maximum < self.batch.max_readings:
            raise ConfigError(
                f"mqtt.receive_maximum ({self.mqtt.receive_maximum}) must be at least "
                f"batch.max_readings ({self.batch.max_readings}), otherwise a batch can never fill"
            )

    @property
    def client_id(self) -> str:
        """The MQTT client id: configured, or derived from the gateway id."""
        return self.mqtt.client_id or f"anchorgate-{self.gateway.id}"
