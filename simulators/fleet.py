"""The fleet: devices, their report schedule, physical events and injected faults.

:class:`Simulation` is synchronous and does no I/O: asked for everything due up to
a time, it returns the MQTT messages (and abrupt disconnects) in schedule order and
records each in the :class:`~simulators.manifest.Manifest`. The runner decides
when to ask (on the wall clock, or as fast as possible) and publishes. All
randomness comes from the one seeded ``random.Random`` passed in and every step
happens in a fixed order, so the same scenario, seed and clock give the same bytes.

Schedule: device ``i`` first reports at a random phase within its interval, then
every ``interval`` seconds; a heap orders the reports. A component reports one
temperature reading; a shipment tracker reports a location reading (unless the fix
is lost) and a container temperature reading, each with its own seq.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.readings import (
    Kind,
    LocationReading,
    Reading,
    TemperatureReading,
    encode_payload,
    topic_for,
)
from ledger import SigningKey
from simulators.faults import PAYLOAD_FAULTS, corrupt
from simulators.manifest import DeviceRecord, Manifest
from simulators.scenario import FaultSpec, Group, Scenario
from simulators.signing import signed_payload
from simulators.thermal import PARTS, ComponentModel, DutyCycle
from simulators.tracker import ShipmentModel


@dataclass(slots=True)
class Outgoing:
    """One MQTT message to publish on ``connection``, scheduled for ``due``."""

    topic: str
    payload: bytes
    connection: int
    due: float


@dataclass(slots=True)
class Drop:
    """Drop ``connection`` abruptly (no DISCONNECT packet), then connect again."""

    connection: int
    due: float


Action = Outgoing | Drop


class Device:
    """One sensor: its id, model, seq counter, clock skew and connection."""

    __slots__ = (
        "asset_id",
        "component",
        "connection",
        "device_id",
        "group",
        "history",
        "index",
        "key",
        "record",
        "seq",
        "shipment",
        "skew_ms",
        "topics",
    )

    def __init__(
        self,
        device_id: str,
        asset_id: str,
        group: Group,
        *,
        index: int,
        connection: int,
        skew_ms: int,
        topics: dict[Kind, str],
        record: DeviceRecord,
        history: int,
        component: ComponentModel | None = None,
        shipment: ShipmentModel | None = None,
    ) -> None:
        self.device_id = device_id
        self.key: SigningKey | None = None  # set: the device signs what it publishes
        self.asset_id = asset_id
        self.group = group
        self.index = index
        self.connection = connection
        self.skew_ms = skew_ms
        self.topics = topics
        self.record = record
        self.seq = 0
        # The device's last genuine messages (topic, seq, payload), for duplicates and replays.
        self.history: deque[tuple[str, int, bytes]] = deque(maxlen=history)
        self.component = component
        self.shipment = shipment

    def take_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq


class _FaultPlan:
    """When one scenario fault fires: at most once per report it sees."""

    def __init__(self, spec: FaultSpec, duration_s: float) -> None:
        self.spec = spec
        self.stop_s = duration_s if spec.stop_s is None else min(spec.stop_s, duration_s)
        self.next_s = spec.start_s  # for ``every``: the next injection time

    def fires(self, group: str, due: float, rng: random.Random) -> bool:
        spec = self.spec
        if (spec.group is not None and spec.group != group) or not (
            spec.start_s <= due < self.stop_s
        ):
            return False
        if spec.every_s is not None:
            if due >= self.next_s:
                self.next_s += spec.every_s
                return True
            return False
        assert spec.probability is not None
        return rng.random() < spec.probability


class Simulation:
    """Every device of a scenario, and what they publish over time."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        rng: random.Random,
        ts_ms: Callable[[float], int],
        manifest: Manifest,
        device_keys: Mapping[str, SigningKey] | None = None,
    ) -> None:
        self.scenario = scenario
        self.device_keys = device_keys or {}
        self.rng = rng
        self.ts_ms = ts_ms  # device clock (before skew) for a report due at run time t
        self.manifest = manifest
        self.fault_plans = [_FaultPlan(spec, scenario.duration_s) for spec in scenario.faults]
        history = 1 + max(
            (int(spec.params.get("age", 0)) for spec in scenario.faults if spec.kind == "replay"),
            default=0,
        )
        self.devices: list[Device] = []
        self._heap: list[tuple[float, int]] = []
        for group in scenario.groups:
            for i in range(group.count):
                self._add_device(group, i, history)
        heapq.heapify(self._heap)
        self._events = self._event_timeline()

    def _add_device(self, group: Group, i: int, history: int) -> None:
        rng = self.rng
        asset_id = f"{group.name}-{i:05d}"
        device_id = f"{asset_id}-{'trk' if group.is_shipment else 'tmp'}"
        kinds: tuple[Kind, ...] = (
            ("location", "temperature") if group.is_shipment else ("temperature",)
        )
        component = shipment = None
        if group.is_shipment:
            assert group.route is not None
            shipment = ShipmentModel(
                group.route,
                rng=rng,
                speed_mps=group.speed_kmh / 3.6,
                stop_probability=group.stop_probability,
                start_s=0.0,
                gps_noise_m=group.gps_noise_m,
                lost_fix_probability=group.lost_fix_probability,
                profile=group.profile,
                setpoint_c=group.setpoint_c,
                ambient_c=group.ambient_c,
                diurnal_c=group.diurnal_c,
                noise_c=group.noise_c,
            )
            # Spread the fleet along the route: each shipment is somewhere in the first half.
            shipment.start_s = rng.uniform(0.0, 0.5) * shipment.duration_s
        else:
            duty = DutyCycle(group.duty_period_s, group.duty_on_fraction)
            component = ComponentModel(
                PARTS[group.model],
                ambient_c=group.ambient_c,
                duty=duty,
                noise_c=group.noise_c,
                phase_s=rng.uniform(0.0, duty.period_s),
            )
        index = len(self.devices)
        device = Device(
            device_id,
            asset_id,
            group,
            index=index,
            connection=index % self.scenario.broker.connections,
            skew_ms=rng.randint(-group.clock_skew_ms, group.clock_skew_ms),
            topics={
                kind: topic_for(device_id, kind, self.scenario.topic_template) for kind in kinds
            },
            record=self.manifest.add_device(device_id, group.model, asset_id),
            history=history,
            component=component,
            shipment=shipment,
        )
        device.key = self.device_keys.get(device_id)
        self.devices.append(device)
        self._heap.append((rng.uniform(0.0, group.interval_s), index))

    def _event_timeline(self) -> list[tuple[float, int, str, bool, list[Device]]]:
        """Physical events as (time, order, kind, start?, devices), latest first."""
        timeline = []
        for order, event in enumerate(self.scenario.events):
            members = [d for d in self.devices if d.group.name == event.group][: event.devices]
            until = None if event.duration_s is None else event.at_s + event.duration_s
            for device in members:
                self.manifest.events.append(
                    {
                        "kind": event.kind,
                        "device_id": device.device_id,
                        "at": event.at_s,
                        "until": until,
                    }
                )
            timeline.append((event.at_s, order, event.kind, True, members))
            if until is not None:
                timeline.append((until, order, event.kind, False, members))
        timeline.sort(key=lambda item: (item[0], item[1], item[3]), reverse=True)
        return timeline

    def _apply_events(self, until: float) -> None:
        scale = self.scenario.time_scale
        while self._events and self._events[-1][0] <= until:
            at, _, kind, start, members = self._events.pop()
            for device in members:
                model = device.component or device.shipment
                assert model is not None
                model.set_fault(kind, start, at * scale)

    def next_due(self) -> float | None:
        """When the next report is due, or None when the run is over."""
        if self._heap and self._heap[0][0] < self.scenario.duration_s:
            return self._heap[0][0]
        return None

    def take(self, until: float, limit: int = 1000) -> list[Action]:
        """Everything due at or before ``until`` (about ``limit`` messages at most)."""
        out: list[Action] = []
        heap, devices, end = self._heap, self.devices, self.scenario.duration_s
        while heap and len(out) < limit:
            due, index = heap[0]
            if due > until or due >= end:
                break
            self._apply_events(due)
            device = devices[index]
            self._report(device, due, out)
            heapq.heapreplace(heap, (due + device.group.interval_s, index))
        return out

    def _readings(self, device: Device, due: float) -> list[Reading]:
        t_model = due * self.scenario.time_scale
        ts = self.ts_ms(due) + device.skew_ms
        if device.component is not None:
            celsius = device.component.sample(t_model, self.rng)
            return [
                TemperatureReading(
                    device.device_id, device.take_seq(), ts, celsius, device.asset_id
                )
            ]
        assert device.shipment is not None
        readings: list[Reading] = []
        fix = device.shipment.fix(t_model, self.rng)
        if fix is not None:
            readings.append(
                LocationReading(
                    device.device_id,
                    device.take_seq(),
                    ts,
                    fix.lat,
                    fix.lon,
                    speed_mps=fix.speed_mps,
                    accuracy_m=fix.accuracy_m,
                    asset_id=device.asset_id,
                )
            )
        celsius = device.shipment.container_c(t_model, self.rng)
        readings.append(
            TemperatureReading(device.device_id, device.take_seq(), ts, celsius, device.asset_id)
        )
        return readings

    def _publish(
        self, device: Device, readings: list[Reading], due: float, out: list[Action]
    ) -> None:
        fmt = self.scenario.payload_format
        for reading in readings:
            seq = reading.seq
            assert seq is not None  # the simulator always numbers genuine readings
            topic = device.topics[reading.kind]
            payload = self._signed(device, topic, encode_payload(reading.to_payload(), fmt))
            out.append(Outgoing(topic, payload, device.connection, due))
            device.record.add_reading(seq, reading.kind)
            device.history.append((topic, seq, payload))

    def _report(self, device: Device, due: float, out: list[Action]) -> None:
        readings = self._readings(device, due)
        self._publish(device, readings, due, out)
        for plan in self.fault_plans:
            if plan.fires(device.group.name, due, self.rng):
                self._inject(plan.spec, device, readings, due, out)

    def _inject(
        self,
        spec: FaultSpec,
        device: Device,
        readings: list[Reading],
        due: float,
        out: list[Action],
    ) -> None:
        kind, manifest = spec.kind, self.manifest
        if kind in PAYLOAD_FAULTS:
            reading = self.rng.choice(readings)
            payload = corrupt(
                kind,
                reading.to_payload(),
                self.scenario.payload_format,
                self.rng,
                other_device_id=self._other_device(device),
                params=spec.params,
            )
            topic = device.topics[reading.kind]
            payload = self._signed(device, topic, payload)
            out.append(Outgoing(topic, payload, device.connection, due))
            manifest.fault_message(
                kind, device.device_id, seq=reading.seq, topic=topic, payload=payload, at=due
            )
        elif kind in ("duplicate", "replay"):
            back = 0 if kind == "duplicate" else int(spec.params["age"])
            topic, seq, payload = device.history[max(0, len(device.history) - 1 - back)]
            out.append(Outgoing(topic, payload, device.connection, due))
            manifest.fault_message(
                kind, device.device_id, seq=seq, topic=topic, payload=payload, at=due
            )
        elif kind == "burst":
            first = device.seq
            for _ in range(int(spec.params["size"])):
                self._publish(device, self._readings(device, due), due, out)
            manifest.fault_action(kind, device.device_id, due, seq=first, count=device.seq - first)
        elif kind == "disconnect":
            out.append(Drop(device.connection, due))
            manifest.fault_action(kind, device.device_id, due, connection=device.connection)
        else:  # pragma: no cover - FAULT_KINDS and this dispatch are kept in step by tests
            raise AssertionError(kind)

    @staticmethod
    def _signed(device: Device, topic: str, payload: bytes) -> bytes:
        """What the device puts on the wire: signed when it holds a key."""
        if device.key is None or not payload:
            return payload
        return signed_payload(device.key, topic, device.device_id, payload)

    def _other_device(self, device: Device) -> str:
        """Another device's id (the next in the fleet), for a payload that lies about its sender."""
        if len(self.devices) == 1:
            return f"{device.device_id}-other"
        return self.devices[(device.index + 1) % len(self.devices)].device_id
