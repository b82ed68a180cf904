"""Helpers for the gateway's end-to-end tests: config files, a QoS 1 publisher, a subprocess.

The publisher is plain paho-mqtt (not the simulators, which are built in parallel): it
publishes with QoS 1 and returns only when the broker has acknowledged every message,
so that "published" means "the broker has it".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.config import Config
from gateway.config_load import parse_config
from gateway.mosquitto import Mosquitto
from gateway.readings import TemperatureReading, encode_reading, topic_for
from ledger import SigningKey

REPO = Path(__file__).parents[2]
RUNNING: list[GatewayProcess] = []


@pytest.fixture(autouse=True)
def reap_gateways() -> Iterator[None]:
    """Kill gateway processes a test started and did not stop (import it into a module)."""
    yield
    while RUNNING:
        gateway = RUNNING.pop()
        if gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait(10)
        gateway.close_log()


def write_config(
    directory: Path,
    broker: Mosquitto,
    *,
    gateway_id: str = "gw-test",
    max_readings: int = 200,
    max_delay: float = 0.2,
    receive_maximum: int | None = None,
    shared_group: str = "",
    extra: str = "",
) -> Path:
    """A key and a gateway.toml in ``directory`` for a gateway on ``broker``."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "gateway.key"
    if not key_file.exists():
        SigningKey.generate().save(key_file)
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "{gateway_id}"
key_file = "{key_file}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "anchorgate-{gateway_id}-{uuid.uuid4().hex[:8]}"
receive_maximum = {receive_maximum or 2 * max_readings}
shared_group = "{shared_group}"
reconnect_min_delay = 0.1
reconnect_max_delay = 1.0
[batch]
max_readings = {max_readings}
max_delay = {max_delay}
[store]
path = "{directory / "gateway.duckdb"}"
[health]
file = "{directory / "health.json"}"
interval = 0.5
[api]
enabled = false
[log]
level = "info"
{extra}
"""
    )
    return path


def load(path: Path, environ: dict[str, str] | None = None) -> Config:
    return parse_config(path.read_text(), environ=environ or {})


def readings(devices: int, count: int, start_seq: int = 0) -> list[tuple[str, bytes]]:
    """``count`` (topic, payload) pairs spread round-robin over ``devices`` devices."""
    now_ms = time.time_ns() // 1_000_000
    result = []
    for n in range(count):
        device = f"dev-{n % devices:03d}"
        seq = start_seq + n // devices
        reading = TemperatureReading(device, seq, now_ms, 20.0 + (n % 100) / 10)
        payload = encode_reading(reading, "json" if n % 2 else "msgpack")
        result.append((topic_for(device, "temperature"), payload))
    return result


class Publisher:
    """A QoS 1 MQTT 5 publisher in its own paho network thread."""

    def __init__(
        self,
        broker: Mosquitto,
        client_id: str = "test-publisher",
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self._acked = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda *args: self._connected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("publisher did not connect")

    def _on_publish(self, *args: object) -> None:
        with self._lock:
            self._acked += 1

    @property
    def acked(self) -> int:
        with self._lock:
            return self._acked

    def publish(self, messages: Iterable[tuple[str, bytes]], wait: bool = True) -> int:
        sent = 0
        for topic, payload in messages:
            info = self.client.publish(topic, payload, qos=1)
            # While the broker restarts paho keeps QoS 1 messages and sends them on
            # reconnect (rc NO_CONN); anything else is a failure.
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
            sent += 1
        if wait:
            self.wait_acked(sent)
        return sent

    def wait_acked(self, total: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker acknowledged {self.acked} of {total} publishes")
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(
    broker: Mosquitto,
    messages: Sequence[tuple[str, bytes]],
    auth: tuple[str, str] | None = None,
) -> None:
    publisher = Publisher(broker, auth=auth)
    try:
        publisher.publish(messages)
    finally:
        publisher.close()


class GatewayProcess:
    """``anchorgate run -c CONFIG`` as a child process, with its stderr in a file.

    Every instance is registered in ``RUNNING``; the ``reap_gateways`` fixture kills
    whatever a failed test left behind (a leftover gateway would keep reconnecting
    with the same client id and take over a later test's session).
    """

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        RUNNING.append(self)
        self.config = config
        self.env = env or {}
        self.log_path = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
            cwd=REPO,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def health(self) -> dict[str, object]:
        path = load(self.config, self.env).health.file
        assert path is not None
        try:
            loaded: dict[str, object] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return loaded

    def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited {self.process.returncode}: {self.log()}")
            if "mqtt.connected" in self.log():
                return
            time.sleep(0.05)
        raise TimeoutError(f"gateway did not connect: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.close_log()

    def close_log(self) -> None:
        if not self._log.closed:
            self._log.close()


def verify_store(config_path: Path) -> list[tuple[str, str, int | None]]:
    """Check the whole chain and every block's leaves; return (device, kind, seq) stored."""
    from gateway.chain_check import check_recent_blocks
    from gateway.store import Store

    config = load(config_path)
    key = SigningKey.load(config.gateway.key_file)
    with Store.open(config.store.path) as store:
        blocks = store.count_blocks()
        assert check_recent_blocks(store, key, config.gateway.id, blocks + 1) == blocks
        rows = store.query("SELECT device_id, kind, seq FROM readings")
    return [(str(d), str(k), None if s is None else int(s)) for d, k, s in rows]


def published_keys(messages: Iterable[tuple[str, bytes]]) -> list[tuple[str, str, int | None]]:
    """(device, kind, seq) of published readings, from their topic and payload."""
    from gateway.decode import parse_payload

    keys = []
    for topic, payload in messages:
        _, device, kind = topic.split("/")
        document, _ = parse_payload(payload)
        keys.append((device, kind, document.get("seq")))
    return keys


def wait_for(gateway: GatewayProcess, **counts: int) -> dict[str, object]:
    """Wait until the health file shows these counters (e.g. stored=300); return it."""
    deadline = time.monotonic() + 60
    while True:
        health = gateway.health()
        if all(health.get(name) == value for name, value in counts.items()):
            return health
        if time.monotonic() > deadline:
            raise TimeoutError(f"health never showed {counts}: {health}")
        time.sleep(0.05)


def wait_quiet(gateway: GatewayProcess, quiet: float = 1.5, timeout: float = 60.0) -> None:
    """Wait until the gateway has nothing unacked and has received nothing for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        health = gateway.health()
        seen = (health.get("readings_in"), health.get("queue_depth"))
        if seen != last:
            last, since = seen, time.monotonic()
        elif health.get("queue_depth") == 0 and time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise TimeoutError(f"gateway did not go quiet: {gateway.health()}")


def stored_count(config_path: Path, environ: dict[str, str] | None = None) -> int:
    from gateway.store import Store

    with Store.open(load(config_path, environ).store.path) as store:
        return store.counts().readings


def finish(gateway: GatewayProcess, expected: int, timeout: float = 90.0) -> GatewayProcess:
    """Stop the gateway once it is quiet; restart it while the store lacks readings.

    On a loaded CI machine a gateway can look quiet while the broker still holds
    readings for it; a restart then picks them up (the session keeps them).
    """
    deadline = time.monotonic() + timeout
    run = 0
    while True:
        wait_quiet(gateway, quiet=1.5, timeout=max(1.0, deadline - time.monotonic()))
        assert gateway.terminate() == 0, gateway.log()
        if stored_count(gateway.config, gateway.env) >= expected or time.monotonic() > deadline:
            return gateway
        run += 1
        gateway = GatewayProcess(gateway.config, gateway.log_path.with_suffix(f".more{run}.log"))
        gateway.wait_connected()


class CuttableProxy:
    """A TCP forwarder to the broker whose connections a test can cut (a network cut)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.target = (broker.host, broker.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Break every open connection, as a network cut would."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()
