"""``anchorgate demo --broker embedded``: the whole product on the in-process amqtt broker.

The demo must say plainly which broker it uses, run the gateway in MQTT 3.1.1 mode
against it, store and anchor the readings, export and verify a proof, audit the store,
and leave no broker port open and no gateway process behind. ``--broker auto`` without
Mosquitto falls back to the same broker and says why; ``--broker mosquitto`` without
it is one clear error.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from test_demo_run import alive

from gateway import demo
from gateway.cli_errors import UserError
from gateway.embedded_broker import EmbeddedBroker
from gateway.mosquitto import Mosquitto
from gateway.store import Store
from ledger import PublicKey, verify_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_on_the_embedded_broker(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    argv = ["demo", "--broker", "embedded", "--duration", "3", "--dir", str(work)]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"using the embedded Python broker \(amqtt [\d.]+, MQTT 3\.1\.1\)", out), out
    assert "broker: Mosquitto" not in out
    assert 'protocol = "3.1.1"' in (work / "gateway.toml").read_text()
    gateway_log = (work / "gateway.log").read_text()
    assert 'granted="Granted QoS 1"' in gateway_log
    assert "alert.unpublished" not in gateway_log
    assert "VALID: every check passed." in out
    assert "OK: no problem found" in out

    with Store.open(work / "anchorgate.duckdb") as store:
        counts = store.counts()
    assert counts.readings > 0
    assert counts.blocks > 0
    bundle = work / "reefer-00000.proof.json"
    report = verify_bundle(bundle.read_bytes(), PublicKey.load(work / "keys" / "gateway.pub"))
    assert report.valid, report.failure
    assert report.readings
    assert (work / "report-reefer-00000" / "report.html").exists()
    assert "Connection from 127.0.0.1" in (work / "broker" / "amqtt.log").read_text()

    gateway_pid = int(re.search(r"gateway: pid (\d+)", out)[1])  # type: ignore[index]
    assert not alive(gateway_pid)
    port = int(re.search(r"\(embedded\) on 127.0.0.1:(\d+)", out)[1])  # type: ignore[index]
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    assert f"python -m gateway.embedded_broker --port {port}" in out


def test_auto_falls_back_to_the_embedded_broker_without_mosquitto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "find_mosquitto", lambda: None)
    console = Console(record=True, width=200)
    broker = demo._pick_broker("auto", tmp_path, console)
    assert isinstance(broker, EmbeddedBroker)
    text = console.export_text()
    assert "Mosquitto not found on PATH: using the embedded Python broker (amqtt " in text
    assert ", MQTT 3.1.1)" in text
    with pytest.raises(UserError, match="--broker mosquitto: Mosquitto is not installed"):
        demo._pick_broker("mosquitto", tmp_path, console)


@pytest.mark.broker
def test_auto_takes_mosquitto_when_it_is_installed(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    assert isinstance(demo._pick_broker("auto", tmp_path, console), Mosquitto)
    assert isinstance(demo._pick_broker("embedded", tmp_path, console), EmbeddedBroker)
    assert "--broker embedded: using the embedded Python broker" in console.export_text()
