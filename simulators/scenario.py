"""Scenario files: what fleet to simulate, for how long, and which faults to inject.

A scenario is a TOML file (docs/SIMULATORS.md lists every key; config/scenarios/
has a small demo and a load fleet). :func:`load_scenario` reads and checks it into
frozen values; every mistake raises :class:`~simulators.errors.ScenarioError` naming
the file, the table and the key. :func:`apply_overrides` applies the command-line
flags on top, with the same checks.

Times in a scenario (``duration``, ``interval``, event ``at``, fault ``start`` /
``stop`` / ``every``) are wall-clock seconds of the run. ``time_scale`` makes the
physics (thermal response, driving along a route) run that many times faster than
the wall clock; readings' ``ts`` stay on the wall clock.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.readings import DEFAULT_TOPIC_TEMPLATE, PayloadFormat
from simulators.broker_settings import BrokerSettings, read_password
from simulators.errors import ScenarioError
from simulators.faults import FAULT_KINDS, FAULT_PARAMS, FaultKind
from simulators.routes import Route, resolve_route
from simulators.thermal import COMPONENT_FAULTS, PARTS
from simulators.tracker import PROFILES, SHIPMENT_FAULTS, Profile

SHIPMENT = "shipment"
MODELS: tuple[str, ...] = (*PARTS, SHIPMENT)
EVENT_KINDS: tuple[str, ...] = (*COMPONENT_FAULTS, *SHIPMENT_FAULTS)

T = TypeVar("T")
_REQUIRED: Any = object()


@dataclass(frozen=True)
class Group:
    """``count`` devices of one model reporting every ``interval_s`` seconds."""

    name: str
    model: str
    count: int
    interval_s: float
    noise_c: float = 0.1
    ambient_c: float = 25.0
    clock_skew_ms: int = 0
    # components
    duty_period_s: float = 600.0
    duty_on_fraction: float = 1.0
    # shipments
    route: Route | None = None
    profile: Profile = "cold_chain"
    setpoint_c: float = 5.0
    diurnal_c: float = 6.0
    speed_kmh: float = 80.0
    stop_probability: float = 0.3
    gps_noise_m: float = 5.0
    lost_fix_probability: float = 0.02

    @property
    def is_shipment(self) -> bool:
        return self.model == SHIPMENT


@dataclass(frozen=True)
class EventSpec:
    """A physical fault in the models of the first ``devices`` devices of a group."""

    kind: str
    group: str
    at_s: float
    duration_s: float | None = None  # None: until the end of the run
    devices: int = 1


@dataclass(frozen=True)
class FaultSpec:
    """Bad input of one kind, every ``every_s`` seconds or with a per-report probability."""

    kind: FaultKind
    group: str | None = None
    start_s: float = 0.0
    stop_s: float | None = None  # None: until the end of the run
    every_s: float | None = None
    probability: float | None = None
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    groups: tuple[Group, ...]
    seed: int = 0
    time_scale: float = 1.0
    payload_format: PayloadFormat = "json"
    qos: int = 1
    topic_template: str = DEFAULT_TOPIC_TEMPLATE
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    events: tuple[EventSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    device_keys: Path | None = None  # a directory of <device_id>.key: those devices sign

    @property
    def device_count(self) -> int:
        return sum(group.count for group in self.groups)


class _Table:
    """One TOML table being read: typed getters that name the key in every error."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where} must be a table")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise ScenarioError(f"{self.where}: missing {key!r}")
        return default

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.where}: {key!r} {problem}")

    def text(self, key: str, default: Any = _REQUIRED, choices: Sequence[str] = ()) -> Any:
        value = self._get(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def integer(
        self, key: str, default: Any = _REQUIRED, low: int | None = None, high: int | None = None
    ) -> Any:
        value = self._get(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, not {value!r}")
        return _check_range(self, key, value, low, high)

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> Any:
        value = self._get(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {value!r}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, not {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be more than 0, not {value!r}")
        return _check_range(self, key, float(value), low, high)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def tables(self, key: str) -> list[object]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"must be an array of tables ([[{key}]])")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ScenarioError(f"{self.where}: unknown key {unknown[0]!r}")


def _check_range(table: _Table, key: str, value: T, low: Any, high: Any) -> T:
    if low is not None and value < low:
        raise table.fail(key, f"must be at least {low}, not {value!r}")
    if high is not None and value > high:
        raise table.fail(key, f"must be at most {high}, not {value!r}")
    return value


def _path(table: _Table, key: str, base_dir: Path) -> Path | None:
    value = table.text(key, None)
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def _broker(table: _Table, base_dir: Path, environ: Mapping[str, str]) -> BrokerSettings:
    password = table.text("password", None)
    password_env = table.text("password_env", None)
    password_file = _path(table, "password_file", base_dir)
    if password is not None and (password_env is not None or password_file is not None):
        raise table.fail("password", "cannot be combined with password_env or password_file")
    try:
        if password is None:
            password = read_password(password_env, password_file, environ)
        settings = BrokerSettings(
            host=table.text("host", "127.0.0.1"),
            port=table.integer("port", 1883, 1, 65535),
            tls=table.boolean("tls", False),
            ca_file=_path(table, "ca_file", base_dir),
            cert_file=_path(table, "cert_file", base_dir),
            key_file=_path(table, "key_file", base_dir),
            username=table.text("username", None),
            password=password,
            allow_insecure=table.boolean("allow_insecure", False),
            client_id=table.text("client_id", "anchorgate-sim"),
            connections=table.integer("connections", 1, 1, 64),
            keepalive=table.integer("keepalive", 30, 5, 3600),
            inflight=table.integer("inflight", 100, 1, 65535),
            protocol=table.text("protocol", "5", choices=("5", "3.1.1")),
        )
        settings.ssl_context()  # read and check the TLS files now
    except ScenarioError as exc:
        raise ScenarioError(f"{table.where}: {str(exc).removeprefix('[broker]: ')}") from None
    table.finish()
    return settings


def _group(table: _Table, base_dir: Path) -> Group:
    model = table.text("model", choices=MODELS)
    shipment = model == SHIPMENT
    kwargs: dict[str, Any] = {
        "name": table.text("name"),
        "model": model,
        "count": table.integer("count", low=0),
        "interval_s": table.number("interval", positive=True),
        "noise_c": table.number("noise_c", 0.1, low=0.0, high=10.0),
        "ambient_c": table.number("ambient_c", 15.0 if shipment else 25.0, -60.0, 60.0),
        "clock_skew_ms": table.integer("clock_skew_ms", 0, 0, 86_400_000),
    }
    if shipment:
        route = table.text("route")
        try:
            kwargs["route"] = resolve_route(route, base_dir)
        except ScenarioError as exc:
            raise table.fail("route", f"is wrong: {exc}") from None
        kwargs |= {
            "profile": table.text("profile", "cold_chain", PROFILES),
            "setpoint_c": table.number("setpoint_c", 5.0, -40.0, 40.0),
            "diurnal_c": table.number("diurnal_c", 6.0, 0.0, 30.0),
            "speed_kmh": table.number("speed_kmh", 80.0, positive=True, high=300.0),
            "stop_probability": table.number("stop_probability", 0.3, 0.0, 1.0),
            "gps_noise_m": table.number("gps_noise_m", 5.0, 0.0, 1000.0),
            "lost_fix_probability": table.number("lost_fix_probability", 0.02, 0.0, 1.0),
        }
    else:
        kwargs |= {
            "duty_period_s": table.number("duty_period", 600.0, positive=True),
            "duty_on_fraction": table.number("duty_on_fraction", 1.0, 0.0, 1.0),
        }
    table.finish()
    return Group(**kwargs)


def _event(table: _Table, groups: dict[str, Group]) -> EventSpec:
    kind = table.text("kind", choices=EVENT_KINDS)
    group_name = table.text("group", choices=tuple(groups))
    group = groups[group_name]
    wanted = SHIPMENT_FAULTS if group.is_shipment else tuple(COMPONENT_FAULTS)
    if kind not in wanted:
        raise table.fail(
            "kind",
            f"{kind!r} does not apply to {group.model} group {group_name!r}: "
            f"use {' or '.join(wanted)}",
        )
    event = EventSpec(
        kind=kind,
        group=group_name,
        at_s=table.number("at", low=0.0),
        duration_s=table.number("duration", None, positive=True),
        devices=table.integer("devices", 1, low=1),
    )
    table.finish()
    return event


def _fault(table: _Table, groups: dict[str, Group]) -> FaultSpec:
    kind = cast(FaultKind, table.text("kind", choices=FAULT_KINDS))
    group = table.text("group", None, tuple(groups))
    start = table.number("start", 0.0, low=0.0)
    stop = table.number("stop", None, low=0.0)
    if stop is not None and stop <= start:
        raise table.fail("stop", f"must be after start ({start:g}), not {stop!r}")
    every = table.number("every", None, positive=True)
    probability = table.number("probability", None, 0.0, 1.0)
    if (every is None) == (probability is None):
        raise ScenarioError(f"{table.where}: give exactly one of 'every' or 'probability'")
    params = dict(FAULT_PARAMS.get(kind, {}))
    for name, default in params.items():
        low = 1.0 if name in ("age", "size", "bytes") else 0.0
        value = table.number(name, default, low=low)
        params[name] = float(int(value)) if name in ("age", "size", "bytes") else value
    table.finish()
    return FaultSpec(kind, group, start, stop, every, probability, params)


def scenario_from_mapping(
    data: dict[str, Any], where: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Scenario:
    """Check parsed TOML into a :class:`Scenario`; errors start with ``where``.

    ``environ`` is where ``[broker] password_env`` is looked up (default: os.environ).
    """
    top = _Table(data, where)
    name = top.text("name")
    broker = _broker(
        _Table(top._get("broker", {}), f"{where}: [broker]"),
        base_dir,
        os.environ if environ is None else environ,
    )
    groups: dict[str, Group] = {}
    raw_groups = top.tables("groups")
    if not raw_groups:
        raise top.fail("groups", "must list at least one [[groups]] table")
    for i, raw in enumerate(raw_groups):
        group = _group(_Table(raw, f"{where}: groups[{i}]"), base_dir)
        if group.name in groups:
            raise ScenarioError(f"{where}: groups[{i}]: 'name' {group.name!r} is used twice")
        groups[group.name] = group
    events = tuple(
        _event(_Table(raw, f"{where}: events[{i}]"), groups)
        for i, raw in enumerate(top.tables("events"))
    )
    faults = tuple(
        _fault(_Table(raw, f"{where}: faults[{i}]"), groups)
        for i, raw in enumerate(top.tables("faults"))
    )
    template = top.text("topic_template", DEFAULT_TOPIC_TEMPLATE)
    _check_template(top, template)
    scenario = Scenario(
        name=name,
        duration_s=top.number("duration", positive=True),
        groups=tuple(groups.values()),
        seed=top.integer("seed", 0, 0),
        time_scale=top.number("time_scale", 1.0, positive=True, high=1e6),
        payload_format=top.text("format", "json", ("json", "msgpack")),
        qos=top.integer("qos", 1, 0, 2),
        topic_template=template,
        broker=broker,
        events=events,
        faults=faults,
        device_keys=_path(top, "device_keys", base_dir),
    )
    top.finish()
    return scenario


def _check_template(table: _Table, template: str) -> None:
    try:
        topic = template.format(device_id="d", kind="k")
    except (KeyError, IndexError, ValueError) as exc:
        raise table.fail("topic_template", f"is not a valid template: {exc}") from None
    if "{device_id}" not in template or "{kind}" not in template:
        raise table.fail("topic_template", "must contain {device_id} and {kind}")
    if "+" in topic or "#" in topic:
        raise table.fail("topic_template", "must not contain MQTT wildcards")


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"scenario file {path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return scenario_from_mapping(data, str(path), path.parent)


def _spread(counts: Sequence[int], total: int) -> list[int]:
    """Split ``total`` in proportion to ``counts`` (largest remainder, sums exactly)."""
    weights = list(counts) if sum(counts) > 0 else [1] * len(counts)
    exact = [total * w / sum(weights) for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def apply_overrides(
    scenario: Scenario,
    *,
    devices: int | None = None,
    rate: float | None = None,
    duration: float | None = None,
    seed: int | None = None,
    qos: int | None = None,
    payload_format: PayloadFormat | None = None,
    device_keys: Path | None = None,
    **broker: Any,
) -> Scenario:
    """The scenario with command-line values in place of the file's.

    ``devices`` is the fleet's total size, spread over the groups in proportion to
    their counts; ``rate`` is reports per second per device, for every group;
    ``broker`` holds :class:`BrokerSettings` fields (None means keep the file's).
    """
    if devices is not None and devices < 1:
        raise ScenarioError(f"--devices must be at least 1, not {devices}")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise ScenarioError(f"--rate must be more than 0 reports per second, not {rate}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ScenarioError(f"--duration must be more than 0 seconds, not {duration}")
    if seed is not None and seed < 0:
        raise ScenarioError(f"--seed must be 0 or more, not {seed}")
    groups = scenario.groups
    if devices is not None:
        shares = _spread([g.count for g in groups], devices)
        groups = tuple(dataclasses.replace(g, count=n) for g, n in zip(groups, shares, strict=True))
    if rate is not None:
        groups = tuple(dataclasses.replace(g, interval_s=1.0 / rate) for g in groups)
    changes: dict[str, Any] = {"groups": groups}
    for key, value in (
        ("duration_s", duration),
        ("seed", seed),
        ("qos", qos),
        ("payload_format", payload_format),
        ("device_keys", device_keys),
    ):
        if value is not None:
            changes[key] = value
    broker_changes = {key: value for key, value in broker.items() if value is not None}
    if broker_changes:
        try:
            changes["broker"] = dataclasses.replace(scenario.broker, **broker_changes)
        except TypeError as exc:
            raise ScenarioError(f"unknown broker setting: {exc}") from None
        changes["broker"].ssl_context()  # check files given as flags too
    return dataclasses.replace(scenario, **changes)
