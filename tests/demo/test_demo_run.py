"""``anchorgate demo`` end to end: exit 0, a verified proof, and no process left behind."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import PublicKey, verify_bundle

pytestmark = [pytest.mark.broker, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it counts as gone.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_demo_runs_the_whole_product_and_cleans_up(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "4", "--dir", str(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "VALID: every check passed." in out
    assert "OK: no problem found" in out
    bundle = work / "reefer-00000.proof.json"
    report = verify_bundle(bundle.read_bytes(), PublicKey.load(work / "keys" / "gateway.pub"))
    assert report.valid, report.failure
    assert report.readings
    pictures = work / "report-reefer-00000"
    assert {"report.html", "summary.json", "temperature.png", "route.png"} <= {
        p.name for p in pictures.iterdir()
    }
    gateway_pid = int(re.search(r"gateway: pid (\d+)", out)[1])  # type: ignore[index]
    assert not alive(gateway_pid)
    port = int(re.search(r"Mosquitto on 127.0.0.1:(\d+)", out)[1])  # type: ignore[index]
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    # Every step the demo made can be repeated by hand with the commands it printed.
    for command in ("anchorgate verify", "anchorgate audit", "anchorgate export"):
        assert command in out
    assert re.search(r"anchorgate simulate .* --duration 4\b", out), "the run's duration"
