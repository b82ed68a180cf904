"""Key rotation end to end: a real Mosquitto, a real gateway process, the real CLI.

Readings under the original key; stop; ``anchorgate rotate-key``; restart (the config
now names the new key); more readings; stop; export a bundle of a reading anchored
after the rotation and verify it with ``anchorgate verify`` given only the ORIGINAL
public key; the full audit passes with the same key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gateway_helpers import (
    GatewayProcess,
    load,
    publish_all,
    readings,
    reap_gateways,
    wait_for,
    write_config,
)

from gateway.cli import main
from gateway.mosquitto import Mosquitto
from gateway.store import Store
from ledger import SigningKey

pytestmark = pytest.mark.broker
__all__ = ["reap_gateways"]  # the autouse fixture, imported so that pytest finds it


def run_gateway(
    config: Path, name: str, broker: Mosquitto, messages: list[tuple[str, bytes]], total: int
) -> None:
    """Start the gateway, publish, wait until ``total`` readings are stored, stop it."""
    gateway = GatewayProcess(config, config.parent / f"{name}.log")
    try:
        gateway.wait_connected()
        publish_all(broker, messages)
        wait_for(gateway, stored=total, queue_depth=0)
    finally:
        code = gateway.terminate()
    assert code == 0, gateway.log()


def test_rotate_key_between_runs_and_verify_later_readings_with_the_original_key(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "gw", broker, max_readings=50, max_delay=0.2)
    original = load(config).gateway.key_file
    original_pub = tmp_path / "original.pub"
    SigningKey.load(original).public_key.save(original_pub)

    run_gateway(config, "before", broker, readings(devices=5, count=200), 200)

    capsys.readouterr()
    assert main(["rotate-key", "-c", str(config)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "rotated at block" in out
    new_key_file = load(config).gateway.key_file
    assert new_key_file != original
    assert new_key_file.stat().st_mode & 0o777 == 0o600

    run_gateway(config, "after", broker, readings(devices=5, count=150, start_seq=1000), 150)

    with Store.open(load(config).store.path) as store:
        (rotation,) = store.query("SELECT height FROM blocks WHERE leaf_count = 0")
        late = store.query(
            "SELECT block_height, leaf_index FROM readings WHERE block_height > ? "
            "ORDER BY block_height DESC, leaf_index LIMIT 1",
            [rotation[0]],
        )
        keys = {bytes(k) for (k,) in store.query("SELECT DISTINCT key_id FROM blocks")}
    assert len(keys) == 2
    (height, index) = late[0]
    bundle = tmp_path / "late.json"
    code = main(["export", "-c", str(config), "--id", f"{height}:{index}", "-o", str(bundle)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(bundle.read_text())["format"] == "anchorgate-proof/2"
    capsys.readouterr()
    assert main(["verify", str(bundle), "--key", str(original_pub)]) == 0
    assert "VALID" in capsys.readouterr().out
    # The new key alone is not the trust anchor: the auditor keeps the original.
    new_pub = tmp_path / "new.pub"
    SigningKey.load(new_key_file).public_key.save(new_pub)
    assert main(["verify", str(bundle), "--key", str(new_pub)]) == 1
    capsys.readouterr()
    code = main(["audit", "-c", str(config), "--key", str(original_pub), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["readings_checked"] == 350
