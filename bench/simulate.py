"""Simulator speed: QoS 0 publish rate against mosquitto_pub, and a 10k-device fleet's lag.

Usage::

    .venv/bin/python bench/simulate.py                  # both parts, about 90 s
    .venv/bin/python bench/simulate.py --fleet-duration 20 --messages 100000

Part 1 publishes ``--messages`` QoS 0 readings (JSON, 1,000 thermoelectric modules,
unpaced) from one simulator process to a local Mosquitto, while ``mosquitto_sub``
counts them; then ``mosquitto_pub -l`` is fed a file of the same readings, one per
line, counted the same way, as the ceiling on this machine. (QoS 0 on purpose:
``mosquitto_pub -l`` disconnects at the end of its input before queued QoS 1
messages are sent.) Target: at least 20,000 messages/s. For comparison, a quarter
as many go through ``await aiomqtt.Client.publish`` one at a time, the path the
simulator avoids for QoS 0 (simulators/publisher.py).

Part 2 runs 10,000 devices at one report per 10 s each, paced on the wall clock at
QoS 1, and prints the scheduling lag (time handed to the MQTT client minus the
report's scheduled time) and the CPU the process used. Target: no falling behind.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.mosquitto import Mosquitto  # noqa: E402
from simulators.fleet import Outgoing, Simulation  # noqa: E402
from simulators.runner import new_manifest, run_scenario  # noqa: E402
from simulators.scenario import Scenario, scenario_from_mapping  # noqa: E402

TOPIC_FILTER = "sensors/#"


def load_scenario(messages: int, port: int) -> Scenario:
    devices, rate = 1000, 50.0
    return scenario_from_mapping(
        {
            "name": "bench-rate",
            "seed": 1,
            "duration": messages / (devices * rate),
            "qos": 0,
            "format": "json",
            "broker": {"port": port},
            "groups": [
                {
                    "name": "tem",
                    "model": "thermoelectric_module",
                    "count": devices,
                    "interval": 1 / rate,
                    "duty_period": 60,
                    "duty_on_fraction": 0.5,
                }
            ],
        },
        "bench",
        REPO,
    )


def fleet_scenario(duration: float, port: int) -> Scenario:
    groups = [
        {"name": "hs", "model": "heat_sink", "count": 4500, "interval": 10.0},
        {"name": "dch", "model": "die_cast_housing", "count": 3000, "interval": 10.0},
        {"name": "tem", "model": "thermoelectric_module", "count": 1500, "interval": 10.0},
        {
            "name": "reefer",
            "model": "shipment",
            "count": 1000,
            "interval": 10.0,
            "route": "rotterdam-munich",
        },
    ]
    return scenario_from_mapping(
        {
            "name": "bench-fleet",
            "seed": 2,
            "duration": duration,
            "time_scale": 10,
            "qos": 1,
            "format": "json",
            "broker": {"port": port, "connections": 4, "inflight": 500},
            "groups": groups,
        },
        "bench",
        REPO,
    )


def subscriber(broker: Mosquitto, count: int) -> subprocess.Popen[bytes]:
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-t",
            TOPIC_FILTER,
            "-C",
            str(count),
            "-F",
            "%t",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # let it subscribe
    return sub


def wait_delivered(sub: subprocess.Popen[bytes], started: float) -> float | None:
    try:
        sub.wait(timeout=120)
    except subprocess.TimeoutExpired:
        sub.kill()
        sub.wait()
        return None
    return time.perf_counter() - started


def publish_rate(broker: Mosquitto, messages: int) -> tuple[int, float, float | None]:
    sc = load_scenario(messages, broker.port)
    expected = len(payloads(sc))
    sub = subscriber(broker, expected)
    manifest = new_manifest(sc)
    started = time.perf_counter()
    result = asyncio.run(run_scenario(sc, manifest, pace=False))
    delivered = wait_delivered(sub, started)
    assert manifest.messages == expected, (manifest.messages, expected)
    return manifest.messages, result.elapsed_s, delivered


def payloads(sc: Scenario) -> list[bytes]:
    sim = Simulation(
        sc,
        rng=random.Random(sc.seed),
        ts_ms=lambda due: 1_767_225_600_000 + round(due * 1000),
        manifest=new_manifest(sc),
    )
    out: list[bytes] = []
    while batch := sim.take(sc.duration_s, 100_000):
        out += [a.payload for a in batch if isinstance(a, Outgoing)]
    return out


def mosquitto_pub_ceiling(
    broker: Mosquitto, messages: int, workdir: Path
) -> tuple[int, float, float | None]:
    lines = payloads(load_scenario(messages, broker.port))
    path = workdir / "messages.txt"
    path.write_bytes(b"".join(p + b"\n" for p in lines))
    sub = subscriber(broker, len(lines))
    started = time.perf_counter()
    with path.open("rb") as stdin:
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-q",
                "0",
                "-l",
                "-t",
                "sensors/bench-00000-tmp/temperature",
            ],
            stdin=stdin,
            check=True,
        )
    published = time.perf_counter() - started
    return len(lines), published, wait_delivered(sub, started)


def aiomqtt_awaited(broker: Mosquitto, messages: int) -> tuple[int, float, float | None]:
    """The design alternative: the same readings through ``await Client.publish`` one by one."""
    import aiomqtt

    lines = payloads(load_scenario(messages, broker.port))
    sub = subscriber(broker, len(lines))

    async def publish_all() -> float:
        async with aiomqtt.Client(broker.host, broker.port, identifier="bench-aiomqtt") as client:
            t0 = time.perf_counter()
            for payload in lines:
                await client.publish("sensors/bench-00000-tmp/temperature", payload, qos=0)
            return time.perf_counter() - t0

    started = time.perf_counter()
    published = asyncio.run(publish_all())
    return len(lines), published, wait_delivered(sub, started)


def fleet_lag(broker: Mosquitto, duration: float) -> None:
    sc = fleet_scenario(duration, broker.port)
    manifest = new_manifest(sc)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(run_scenario(sc, manifest, pace=True))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lag = result.lag
    reports = sum(g.count for g in sc.groups) * duration / 10.0
    print(
        f"fleet: {sc.device_count:,} devices, 1 report / 10 s each, {duration:.0f} s, QoS 1: "
        f"{manifest.messages:,} messages ({manifest.messages / result.elapsed_s:,.0f}/s, "
        f"~{reports:,.0f} reports scheduled)"
    )
    mean = lag.total_ms / max(1, lag.count)
    print(
        f"fleet: lag mean {mean:.1f} ms, p50 <= {lag.percentile(50):.0f} ms, "
        f"p99 <= {lag.percentile(99):.0f} ms, max {lag.max_ms:.1f} ms; "
        f"CPU {cpu:.1f} s of {result.elapsed_s:.1f} s ({100 * cpu / result.elapsed_s:.0f} %)"
    )
    verdict = "kept up" if lag.percentile(99) < 1000 else "FELL BEHIND"
    print(f"fleet: {verdict} (target: p99 lag under 1 s, i.e. no report slips a second)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--fleet-duration", type=float, default=60.0)
    parser.add_argument("--skip-fleet", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        n, published, delivered = publish_rate(broker, args.messages)
        got = f"{n / delivered:,.0f}/s" if delivered else "NOT ALL DELIVERED"
        print(
            f"simulator: {n:,} QoS 0 JSON messages published in {published:.2f} s "
            f"= {n / published:,.0f}/s; all counted by mosquitto_sub at {got}"
        )
        n, published, delivered = mosquitto_pub_ceiling(broker, args.messages, Path(tmp))
        got = f"{n / delivered:,.0f}/s" if delivered else "NOT ALL DELIVERED"
        print(
            f"ceiling:   mosquitto_pub -l, same {n:,} messages, done in {published:.2f} s "
            f"= {n / published:,.0f}/s; all counted by mosquitto_sub at {got}"
        )
        n, published, delivered = aiomqtt_awaited(broker, args.messages // 4)
        got = f"{n / delivered:,.0f}/s" if delivered else "NOT ALL DELIVERED"
        print(
            f"aiomqtt:   awaiting Client.publish per message, {n:,} of the same, "
            f"{published:.2f} s = {n / published:,.0f}/s; counted at {got}"
        )
        if not args.skip_fleet:
            fleet_lag(broker, args.fleet_duration)


if __name__ == "__main__":
    main()
