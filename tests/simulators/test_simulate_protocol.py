"""The simulators' MQTT version: ``[broker] protocol`` and ``--protocol`` (5 or 3.1.1).

3.1.1 is what the demo's embedded broker (amqtt) speaks; against Mosquitto the
connection must really be 3.1.1 (Mosquitto logs the protocol level: p2) and every
message still arrives acknowledged, as the manifest says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sim_helpers import scenario

from gateway.mosquitto import Mosquitto
from simulators.errors import ScenarioError

REPO = Path(__file__).resolve().parents[2]


def test_protocol_is_checked() -> None:
    assert scenario().broker.protocol == "5"
    assert scenario(broker={"protocol": "3.1.1"}).broker.protocol == "3.1.1"
    with pytest.raises(ScenarioError, match=r"protocol.*must be one of 5, 3\.1\.1, not '4'"):
        scenario(broker={"protocol": "4"})


@pytest.mark.broker
def test_simulate_speaks_mqtt311_when_asked(tmp_path: Path, broker: Mosquitto) -> None:
    manifest = tmp_path / "manifest.json"
    argv = ["simulate", "-s", str(REPO / "config" / "scenarios" / "demo.toml")]
    argv += ["--port", str(broker.port), "--duration", "2", "--protocol", "3.1.1"]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv, "--manifest", str(manifest)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as anchorgate-sim-0 (p2," in broker.log()
    totals = json.loads(manifest.read_text())["totals"]
    assert totals["messages"] > 0
