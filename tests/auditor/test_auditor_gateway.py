"""A real gateway process with its read API: status and export while it runs, audit after.

The gateway holds the DuckDB file, so the auditor's commands must go through the API;
a second gateway on the same port must not be mistaken for ours.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.cli import main
from gateway.mosquitto import Mosquitto, free_port
from gateway.readings import TemperatureReading, encode_reading, topic_for
from ledger import PublicKey, SigningKey, verify_bundle

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]


def write_config(directory: Path, broker: Mosquitto, api_port: int) -> Path:
    SigningKey.generate().save(directory / "gateway.key")
    SigningKey.load(directory / "gateway.key").public_key.save(directory / "gateway.pub")
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "gw-api-test"
key_file = "{directory / "gateway.key"}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "anchorgate-api-test-{api_port}"
receive_maximum = 200
[batch]
max_readings = 100
max_delay = 0.2
[store]
path = "{directory / "gateway.duckdb"}"
[health]
file = ""
[api]
port = {api_port}
"""
    )
    return path


def publish(broker: Mosquitto, count: int) -> None:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="api-test-publisher",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    now_ms = time.time_ns() // 1_000_000
    infos = []
    for n in range(count):
        reading = TemperatureReading(
            f"dev-{n % 5}", n // 5, now_ms, 4.0 + n % 7 / 10, f"SHIP-{n % 2}"
        )
        infos.append(
            client.publish(
                topic_for(reading.device_id, "temperature"), encode_reading(reading), qos=1
            )
        )
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")


def test_status_and_export_through_the_api_of_a_running_gateway(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_port = free_port()
    config = write_config(tmp_path, broker, api_port)
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: b"api.listening" in (tmp_path / "gateway.log").read_bytes())
        publish(broker, 500)

        def stored() -> bool:
            code = main(["status", "-c", str(config), "--json"])
            out = capsys.readouterr().out
            return code == 0 and json.loads(out)["readings"] == 500

        wait_for(stored)
        code = main(["status", "-c", str(config), "--json"])
        captured = capsys.readouterr()
        assert code == 0
        assert "asking its read API" in captured.err
        status = json.loads(captured.out)
        assert status["live"]["state"] == "running"
        assert status["store"] == str((tmp_path / "gateway.duckdb").resolve())

        bundle = tmp_path / "ship.json"
        code = main(["export", "-c", str(config), "--asset", "SHIP-1", "-o", str(bundle)])
        assert code == 0, capsys.readouterr().err
        report = verify_bundle(bundle.read_bytes(), PublicKey.load(tmp_path / "gateway.pub"))
        assert report.valid, report.failure
        assert len(report.readings) == 250
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        log.close()
    capsys.readouterr()
    code = main(["audit", "-c", str(config), "--key", str(tmp_path / "gateway.pub"), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["readings_checked"] == 500
