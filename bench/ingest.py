"""Ingest benchmark: the gateway against a bare manual-ack paho subscriber, same broker, same run.

Usage: .venv/bin/python bench/ingest.py [--readings 200000] [--backlog 1000000]
                                        [--big-store 10000000] [--publishers 2]
                                        [--rounds 3]

Method. Each consumer first makes its persistent session (connect, subscribe,
disconnect); then N readings are published with QoS 1 into the broker's queue for
that session, as fast as the broker takes them; then the consumer starts and drains
the queue. This measures the consumer alone, not the publisher, on this machine.
(a) then (b) make one round, on a broker of its own; ``--rounds`` rounds give the
median ratio, and each prints the CPU time per message of both consumers, which other
work on the machine changes less than the rates.

(a) bare: paho-mqtt, MQTT 5, manual acks, on_message does nothing but ack: the
    ceiling for this client here.
(b) gateway: ``anchorgate run`` as a child process: received, validated, anchored,
    committed, acked. Rate = readings / (last block commit - first receive), from the
    store. Latency = block creation - receive, per reading, from the store (commit
    follows creation within milliseconds; the health file gives the commit time).
(c) memory: the gateway's peak RSS (VmHWM) while draining (b); while draining a
    backlog of ``--backlog`` queued messages; and on a store that already holds
    ``--big-store`` readings (synthetic rows bulk-inserted with SQL, outside the
    chain: they cost what a big table costs, but they are not anchored).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.mosquitto import Mosquitto  # noqa: E402
from gateway.readings import TemperatureReading, encode_reading, topic_for  # noqa: E402
from ledger import SigningKey  # noqa: E402

RECEIVE_MAXIMUM = 2000
MAX_READINGS = 1000
MAX_DELAY = 1.0


def publish_messages(
    host: str, port: int, client_id: str, messages: Iterable[tuple[str, bytes]], count: int
) -> None:
    """Publish ``count`` (topic, payload) messages with QoS 1 as fast as the broker acks."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    for sent, (topic, payload) in enumerate(messages):
        while client.publish(topic, payload, qos=1).rc != 0:
            time.sleep(0.01)
        if sent % 5000 == 0:  # keep paho's own queue short
            while sent - acked > 20_000:
                time.sleep(0.005)
    while acked < count:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def _publish_worker(host: str, port: int, start: int, count: int, devices: int) -> None:
    now_ms = time.time_ns() // 1_000_000
    # Each publisher is its own set of devices, and each device's seq only grows, as with
    # real sensors (devices shared between publishers would interleave two seq ranges,
    # so half the readings would arrive below their device's newest seq and each batch
    # would need a duplicate lookup in the store).
    messages = (
        (
            topic_for(f"dev-{start}-{n % devices:04d}", "temperature"),
            encode_reading(
                TemperatureReading(f"dev-{start}-{n % devices:04d}", n // devices, now_ms, 21.5),
                "json",
            ),
        )
        for n in range(start, start + count)
    )
    publish_messages(host, port, f"bench-pub-{start}", messages, count)


def publish(broker: Mosquitto, count: int, publishers: int, offset: int = 0) -> float:
    """Publish ``count`` readings with QoS 1 over ``publishers`` processes; returns msg/s."""
    started = time.monotonic()
    share = count // publishers
    procs = []
    for i in range(publishers):
        n = share if i < publishers - 1 else count - share * (publishers - 1)
        proc = multiprocessing.Process(
            target=_publish_worker, args=(broker.host, broker.port, offset + i * share, n, 200)
        )
        proc.start()
        procs.append(proc)
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"publisher exited {proc.exitcode}")
    return count / (time.monotonic() - started)


class Bare:
    """A paho manual-ack subscriber that only acks."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-bare",
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self.broker = broker
        self.count = 0
        self.first: float | None = None
        self.last = 0.0
        self.connected = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe("sensors/+/+", qos=1)
        self.connected.set()

    def _on_message(
        self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        client.ack(message.mid, message.qos)
        self.count += 1
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now

    def connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self.connected.clear()
        self.client.connect(
            self.broker.host, self.broker.port, clean_start=False, properties=properties
        )
        self.client.loop_start()
        self.connected.wait(10)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bare_rate(broker: Mosquitto, count: int, publishers: int) -> tuple[float, float]:
    bare = Bare(broker)
    bare.connect()
    time.sleep(0.3)
    bare.disconnect()
    pub_rate = publish(broker, count, publishers)
    bare.connect()
    deadline = time.monotonic() + 600
    while bare.count < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    bare.disconnect()
    assert bare.first is not None
    return count / (bare.last - bare.first), pub_rate


class Gateway:
    def __init__(self, workdir: Path, broker: Mosquitto, api: bool = True) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        key = workdir / "gateway.key"
        if not key.exists():
            SigningKey.generate().save(key)
        self.store = workdir / "gateway.duckdb"
        self.health_path = workdir / "health.json"
        self.config = workdir / "gateway.toml"
        self.config.write_text(
            f"""[gateway]
id = "bench"
key_file = "{key}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
receive_maximum = {RECEIVE_MAXIMUM}
[batch]
max_readings = {MAX_READINGS}
max_delay = {MAX_DELAY}
[store]
path = "{self.store}"
[health]
file = "{self.health_path}"
interval = 0.5
[api]
enabled = {"true" if api else "false"}
[log]
level = "warning"
"""
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.health_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config)], cwd=REPO
        )
        while self.health().get("state") != "running" or not self.health().get("connected"):
            if self.process.poll() is not None:
                raise RuntimeError("gateway exited at start")
            time.sleep(0.05)

    def health(self) -> dict[str, object]:
        try:
            loaded: dict[str, object] = json.loads(self.health_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return loaded

    def memory_mb(self, field: str) -> float:
        """A /proc status field in MB: VmHWM (peak RSS) or RssAnon (private memory now)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def drain(self, count: int, timeout: float = 1800) -> tuple[float, float]:
        """Wait until ``count`` messages are acked; returns peak RSS and peak private MB.

        RSS includes the shared libraries' code (DuckDB and Arrow alone map about
        60 MB); the private (anonymous) memory is what the gateway itself holds.
        """
        deadline = time.monotonic() + timeout
        peak_private = 0.0
        while True:
            peak_private = max(peak_private, self.memory_mb("RssAnon"))
            acked = self.health().get("acked", 0)
            if isinstance(acked, int) and acked >= count:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway drained {acked} of {count}")
            time.sleep(0.1)
        return self.memory_mb("VmHWM"), peak_private

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def store_figures(path: Path, since_height: int) -> dict[str, float]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    row = con.execute(
        """
        SELECT count(*),
               (max(b.created_ns) - min(r.received_ns)) / 1e9,
               quantile_cont((b.created_ns - r.received_ns) / 1e9, 0.5),
               quantile_cont((b.created_ns - r.received_ns) / 1e9, 0.99),
               max((b.created_ns - r.received_ns) / 1e9)
        FROM readings r JOIN blocks b ON r.block_height = b.height
        WHERE b.height >= ?
        """,
        [since_height],
    ).fetchall()[0]
    con.close()
    count, seconds, p50, p99, worst = row
    return {"count": count, "rate": count / seconds, "p50": p50, "p99": p99, "max": worst}


def prefill(store: Path, rows: int) -> None:
    """Bulk-insert synthetic, unanchored readings (block_height -1) to make a big table."""
    import duckdb

    con = duckdb.connect(str(store))
    con.execute(
        """
        INSERT INTO readings
        SELECT -1, 0, 'temperature', 'old-' || (i % 500), i // 500, 1500000000000 + i,
               1500000000000000000 + i * 1000, 'sensors/old/temperature', NULL,
               20.0 + (i % 100) / 10.0, NULL, NULL, NULL, NULL, NULL, 'json',
               'old-' || (i % 500) || '/temperature/' || (i // 500),
               sha256(i::VARCHAR)[1:16]::BLOB, repeat('x', 90)::BLOB, sha256(i::VARCHAR)::BLOB
        FROM range(?) t(i)
        """,
        [rows],
    )
    con.execute("CHECKPOINT")
    con.close()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput_round(workdir: Path, args: argparse.Namespace, number: int) -> dict[str, float]:
    """(a) the bare subscriber, then (b) the gateway, on the same number of readings.

    Beside the rates it gives the CPU time each consumer spent per message, which
    other work on the machine changes less than it changes the rates.
    """
    with Mosquitto(workdir / "broker", persistence=False) as broker:
        return _throughput_round(broker, workdir, args, number)


def _throughput_round(
    broker: Mosquitto, workdir: Path, args: argparse.Namespace, number: int
) -> dict[str, float]:
    cpu = time.process_time()
    ceiling, pub_rate = bare_rate(broker, args.readings, args.publishers)
    bare_cpu = (time.process_time() - cpu) / args.readings  # this process ran only (a)
    gateway = Gateway(workdir / "gw", broker, api=not args.no_api)
    gateway.start()  # makes the session
    gateway.stop()
    publish(broker, args.readings, args.publishers, offset=0)
    gateway.start()
    assert gateway.process is not None
    cpu = process_cpu_seconds(gateway.process.pid)
    rss, private = gateway.drain(args.readings)
    gateway_cpu = (process_cpu_seconds(gateway.process.pid) - cpu) / args.readings
    gateway.stop()
    figures = store_figures(gateway.store, 0)
    ratio = figures["rate"] / ceiling
    print(
        f"round {number}: publish {pub_rate:,.0f} msg/s; (a) bare paho manual-ack "
        f"{ceiling:,.0f} msg/s; (b) gateway end to end {figures['rate']:,.0f} msg/s = "
        f"{ratio:.0%} of bare; receive->block latency p50 {figures['p50']:.3f} s, p99 "
        f"{figures['p99']:.3f} s (target < {2 * MAX_DELAY:.1f} s); peak RSS {rss:.0f} MB "
        f"(private {private:.0f} MB); CPU per message: bare {bare_cpu * 1e6:.1f} us, "
        f"gateway {gateway_cpu * 1e6:.1f} us",
        flush=True,
    )
    return {
        "publish_rate": round(pub_rate),
        "bare_rate": round(ceiling),
        "gateway_rate": round(figures["rate"]),
        "ratio": round(ratio, 3),
        "latency_p50_s": round(figures["p50"], 3),
        "latency_p99_s": round(figures["p99"], 3),
        "latency_max_s": round(figures["max"], 3),
        "rss_mb": round(rss, 1),
        "private_mb": round(private, 1),
        "bare_cpu_us": round(bare_cpu * 1e6, 1),
        "gateway_cpu_us": round(gateway_cpu * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--big-store", type=int, default=10_000_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare and gateway runs, alternately (median)"
    )
    parser.add_argument(
        "--no-api", action="store_true", help="run the gateway without its read API"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="anchorgate-bench-"))
    results: dict[str, object] = {"readings": args.readings}
    try:
        # Each round on a broker of its own: no session of an earlier round gets copies.
        rounds = [
            throughput_round(workdir / f"round-{n + 1}", args, n + 1) for n in range(args.rounds)
        ]
        median = sorted(rounds, key=lambda r: r["ratio"])[(len(rounds) - 1) // 2]
        results.update(median)
        ratios = sorted(r["ratio"] for r in rounds)
        results["ratios"] = ratios
        print(
            f"gateway / bare over {len(rounds)} round(s): median {median['ratio']:.0%} (min "
            f"{ratios[0]:.0%}, max {ratios[-1]:.0%}; target >= 60%); peak RSS "
            f"{max(r['rss_mb'] for r in rounds):.0f} MB (target < 150 MB)"
        )
        with Mosquitto(workdir / "broker", persistence=False) as broker:
            if args.backlog:
                backlog_gw = Gateway(workdir / "gw-backlog", broker, api=not args.no_api)
                backlog_gw.start()
                backlog_gw.stop()
                publish(broker, args.backlog, args.publishers, offset=10**7)
                backlog_gw.start()
                rss, private = backlog_gw.drain(args.backlog)
                backlog_gw.stop()
                figures = store_figures(backlog_gw.store, 0)
                results.update(
                    backlog=args.backlog,
                    backlog_rss_mb=round(rss, 1),
                    backlog_private_mb=round(private, 1),
                )
                results["backlog_rate"] = round(figures["rate"])
                print(
                    f"(c) backlog of {args.backlog:,} queued: peak RSS {rss:.0f} MB "
                    f"(private {private:.0f} MB), "
                    f"drained at {figures['rate']:,.0f} msg/s"
                )

            if args.big_store:
                big = Gateway(workdir / "gw-big", broker, api=not args.no_api)
                big.start()
                big.stop()
                prefill(big.store, args.big_store)
                publish(broker, args.readings, args.publishers, offset=2 * 10**7)
                big.start()
                rss, private = big.drain(args.readings)
                big.stop()
                figures = store_figures(big.store, 0)
                results.update(
                    big_store=args.big_store,
                    big_store_rss_mb=round(rss, 1),
                    big_store_private_mb=round(private, 1),
                )
                results["big_store_rate"] = round(figures["rate"])
                print(
                    f"(c) store holding {args.big_store:,} readings: peak RSS {rss:.0f} MB "
                    f"(private {private:.0f} MB), "
                    f"ingest {figures['rate']:,.0f} msg/s"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
