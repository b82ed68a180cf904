"""``anchorgate keygen`` and ``anchorgate run``: one-line errors with exit codes, no tracebacks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from gateway_helpers import (
    REPO,
    GatewayProcess,
    publish_all,
    readings,
    reap_gateways,
    wait_for,
    write_config,
)

from gateway.cli import main
from gateway.mosquitto import Mosquitto
from ledger import PublicKey, SigningKey


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keygen_writes_a_private_key_0600_and_a_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "keys" / "gw"
    assert main(["keygen", "--out", str(prefix)]) == 0
    private, public = prefix.with_suffix(".key"), prefix.with_suffix(".pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = SigningKey.load(private)
    assert PublicKey.load(public).key_id == key.key_id
    assert key.key_id.hex() in capsys.readouterr().out
    assert main(["keygen", "--out", str(prefix)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert main(["keygen", "--out", str(prefix), "--force"]) == 0
    assert SigningKey.load(private).key_id != key.key_id


def test_run_with_a_bad_config_says_which_key_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[batch]\nmax_readings = 0\n")
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"{config}: batch.max_readings: must be between" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_readable_private_key(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "unused")
    config = write_config(tmp_path / "gw", broker)
    os.chmod(tmp_path / "gw" / "gateway.key", 0o644)
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 2
    assert "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.broker
def test_run_refuses_a_tampered_store_naming_the_block(broker: Mosquitto, tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", broker, max_readings=100, max_delay=0.1)
    gateway = GatewayProcess(config, tmp_path / "gw.log")
    gateway.wait_connected()
    publish_all(broker, readings(5, 300))
    wait_for(gateway, stored=300, queue_depth=0)
    assert gateway.terminate() == 0
    con = duckdb.connect(str(tmp_path / "gw" / "gateway.duckdb"))
    con.execute(
        "UPDATE readings SET celsius = 99, envelope = envelope || 'x'::BLOB "
        "WHERE block_height = 2 AND leaf_index = 7"
    )
    con.close()
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 1
    assert "block 2: reading 7 does not match its leaf hash" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_has_examples() -> None:
    for command in ("keygen", "run"):
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert f"anchorgate {command}" in result.stdout


__all__ = ["reap_gateways"]  # the autouse fixture, imported so that pytest finds it
