"""The simulators sign with device keys; a gateway that requires signatures takes them."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "simulators"))

from gateway_helpers import (
    GatewayProcess,
    load,
    reap_gateways,
    verify_store,
    wait_for,
    write_config,
)
from sim_helpers import EPOCH_MS, scenario

from gateway.cli import main
from gateway.devices import Device, Registry, save_registry
from gateway.mosquitto import Mosquitto
from gateway.store import Store
from ledger import SigningKey
from ledger.device_sig import SignedReading, is_signed_reading
from simulators.errors import ScenarioError
from simulators.fleet import Outgoing, Simulation
from simulators.manifest import Manifest
from simulators.runner import new_manifest
from simulators.signing import load_device_keys

__all__ = ["reap_gateways"]

GROUPS = [{"name": "hs", "model": "heat_sink", "count": 3, "interval": 0.25}]
DEVICES = [f"hs-{i:05d}-tmp" for i in range(3)]


def make_keys(directory: Path, devices: list[str]) -> dict[str, SigningKey]:
    directory.mkdir(parents=True, exist_ok=True)
    keys = {}
    for device_id in devices:
        keys[device_id] = SigningKey.generate()
        keys[device_id].save(directory / f"{device_id}.key")
    return keys


def test_devices_with_keys_sign_everything_they_publish(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys", DEVICES[:2])  # the third device has no key
    sc = scenario(
        groups=GROUPS,
        faults=[
            {"kind": "replay", "probability": 0.2, "age": 2},
            {"kind": "malformed_json", "probability": 0.2},
        ],
        duration=5,
    )
    sim = Simulation(
        sc,
        rng=random.Random(1),
        ts_ms=lambda due: EPOCH_MS + round(due * 1000),
        manifest=new_manifest(sc),
        device_keys=load_device_keys(tmp_path / "keys"),
    )
    messages = [a for a in sim.take(sc.duration_s, 10_000) if isinstance(a, Outgoing)]
    signed = unsigned = 0
    for message in messages:
        device_id = message.topic.split("/")[1]
        if device_id in keys:
            assert is_signed_reading(message.payload)
            SignedReading.from_bytes(message.payload).verify(
                message.topic, keys[device_id].public_key
            )
            signed += 1
        else:
            assert not is_signed_reading(message.payload)
            unsigned += 1
    assert signed > 20
    assert unsigned > 10


def test_device_keys_directory_mistakes(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is not a directory"):
        load_device_keys(tmp_path / "missing")
    with pytest.raises(ScenarioError, match=r"no <device_id>\.key files"):
        load_device_keys(tmp_path)
    (tmp_path / "d.key").write_text("not a key")
    (tmp_path / "d.key").chmod(0o600)
    with pytest.raises(ScenarioError, match=r"device_keys: .*not an unencrypted PEM"):
        load_device_keys(tmp_path)


@pytest.mark.broker
@pytest.mark.slow
def test_simulated_signed_fleet_into_a_gateway_that_requires_signatures(
    broker: Mosquitto, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path / "keys", DEVICES[:2])
    registry = Registry(
        {d: Device(d, keys[d].public_key, d.removesuffix("-tmp")) for d in DEVICES[:2]}
    )
    save_registry(registry, tmp_path / "devices.toml")
    config = write_config(
        tmp_path / "gw",
        broker,
        max_delay=0.1,
        extra=f'[devices]\nregistry = "{tmp_path / "devices.toml"}"\nrequire_signature = true\n',
    )
    gateway = GatewayProcess(config, tmp_path / "gw.log")
    gateway.wait_connected()
    scenario_file = tmp_path / "fleet.toml"
    scenario_file.write_text(
        'name = "signed"\nduration = 2\nseed = 3\ndevice_keys = "keys"\n'
        '[[groups]]\nname = "hs"\nmodel = "heat_sink"\ncount = 3\ninterval = 0.2\n'
    )
    manifest_path = tmp_path / "m.json"
    code = main(
        [
            "simulate",
            "-s",
            str(scenario_file),
            "--port",
            str(broker.port),
            "--no-pacing",
            "--manifest",
            str(manifest_path),
        ]
    )
    assert code == 0
    manifest = Manifest.from_json(manifest_path.read_text())
    per_device = {d: manifest.devices[d].readings for d in DEVICES}
    signed_count = per_device[DEVICES[0]] + per_device[DEVICES[1]]
    wait_for(gateway, stored=signed_count, rejects=per_device[DEVICES[2]], queue_depth=0)
    assert gateway.terminate() == 0, gateway.log()
    stored = verify_store(config)
    assert {device for device, _, _ in stored} == set(DEVICES[:2])
    with Store.open(load(config).store.path) as store:
        fields = store.query("SELECT DISTINCT field FROM rejects")
    assert fields == [("device_id",)]  # the keyless third device is not registered
