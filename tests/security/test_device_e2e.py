"""Signed readings end to end: a real Mosquitto, the real gateway process, a restart.

Under ``require_signature`` the gateway stores the good signed readings and puts each
bad kind (unsigned, bad signature, unknown device, revoked device, replay) into the
rejects table with its reason, while the readings around them are stored. A revoke
made with the CLI while the gateway runs takes effect without a restart; a restarted
gateway still refuses replays; an exported bundle shows who signed each reading.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from device_helpers import KEYS, bad_signature, signed, unsigned, write_registry
from gateway_helpers import (
    GatewayProcess,
    load,
    publish_all,
    reap_gateways,
    verify_store,
    wait_for,
    write_config,
)

from gateway.cli import main
from gateway.mosquitto import Mosquitto
from gateway.store import Store
from ledger import SigningKey

__all__ = ["reap_gateways"]

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def start(config: Path, name: str) -> GatewayProcess:
    gateway = GatewayProcess(config, config.parent / f"{name}.log")
    gateway.wait_connected()
    return gateway


def rejects(config: Path) -> list[tuple[str, str, str]]:
    with Store.open(load(config).store.path) as store:
        rows = store.query("SELECT topic, field, reason FROM rejects ORDER BY received_ns")
    return [(str(t), str(f), str(r)) for t, f, r in rows]


def test_signed_readings_end_to_end(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = write_registry(tmp_path / "devices.toml")
    config = write_config(
        tmp_path / "gw",
        broker,
        max_delay=0.1,
        extra=f'[devices]\nregistry = "{registry}"\nrequire_signature = true\n',
    )
    gateway = start(config, "first")
    publish_all(
        broker,
        [
            signed("dev-a", 1),
            signed("dev-a", 2),
            unsigned("dev-a", 3),
            bad_signature("dev-a", 4),
            signed("dev-x", 1),
            signed("dev-r", 1),
            signed("dev-a", 2, celsius=55.0),  # seq 2 again with another payload
            signed("dev-a", 1, celsius=56.0),
            signed("dev-a", 5),
            signed("dev-b", 1),
        ],
    )
    wait_for(gateway, stored=4, rejects=6, queue_depth=0)
    # Revoked with the CLI while the gateway runs: it rereads the registry.
    assert main(["devices", "revoke", "dev-b", "--registry", str(registry)]) == 0
    time.sleep(1.5)
    publish_all(broker, [signed("dev-b", 2), signed("dev-a", 6)])
    wait_for(gateway, stored=5, rejects=7, queue_depth=0)
    assert gateway.terminate() == 0, gateway.log()
    assert sorted(verify_store(config)) == [
        ("dev-a", "temperature", 1),
        ("dev-a", "temperature", 2),
        ("dev-a", "temperature", 5),
        ("dev-a", "temperature", 6),
        ("dev-b", "temperature", 1),
    ]
    found = [(topic.split("/")[1], field, reason) for topic, field, reason in rejects(config)]
    assert [(device, field) for device, field, _ in found] == [
        ("dev-a", "signature"),
        ("dev-a", "signature"),
        ("dev-x", "device_id"),
        ("dev-r", "device_id"),
        ("dev-a", "seq"),
        ("dev-a", "seq"),
        ("dev-b", "device_id"),
    ]
    reasons = [reason for _, _, reason in found]
    assert reasons[0].startswith("missing")
    assert reasons[1].startswith("bad signature")
    assert reasons[2].startswith("unknown device")
    assert "revoked" in reasons[3]
    assert reasons[4].startswith("replay: dev-a/temperature seq 2")
    assert reasons[5].startswith("replay: dev-a/temperature seq 1")
    assert "revoked" in reasons[6]

    # Restarted: the replay guard comes back from the store; a redelivery of stored
    # bytes is still a duplicate.
    gateway = start(config, "second")
    publish_all(broker, [signed("dev-a", 3), signed("dev-a", 6), signed("dev-a", 7)])
    wait_for(gateway, stored=1, rejects=1, duplicates=1, queue_depth=0)
    assert gateway.terminate() == 0, gateway.log()
    assert rejects(config)[-1][2].startswith("replay: dev-a/temperature seq 3 is at or below 6")

    # The anchored envelope carries the signature: the auditor sees who signed.
    public_key = tmp_path / "gateway.pub"
    SigningKey.load(load(config).gateway.key_file).public_key.save(public_key)
    bundle = tmp_path / "dev-a.proof.json"
    store = str(load(config).store.path)
    assert main(["export", "--store", store, "--device", "dev-a", "-o", str(bundle)]) == 0
    capsys.readouterr()
    verify = ["verify", str(bundle), "--key", str(public_key)]
    assert main([*verify, "--device-keys", str(registry), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    origins = {row["seq"]: row["device_signature"] for row in report["readings"]}
    assert sorted(origins) == [1, 2, 5, 6, 7]
    assert {o["status"] for o in origins.values()} == {"verified"}
    assert {o["key_id"] for o in origins.values()} == {KEYS["dev-a"].key_id.hex()}
    assert main(verify) == 0
    text = capsys.readouterr().out
    assert "signed by device dev-a" in text
    assert "not checked" in text
    # Another key for dev-a: the auditor is told that the signatures fail.
    wrong = tmp_path / "wrong-keys"
    wrong.mkdir()
    KEYS["intruder"].public_key.save(wrong / "dev-a.pub")
    assert main([*verify, "--device-keys", str(wrong)]) == 1
    assert "FAILS" in capsys.readouterr().out
    # The audit reads the readings inside the signed payloads.
    assert main(["audit", "--store", store, "--key", str(public_key)]) == 0
