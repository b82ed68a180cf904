"""Checkpoints: each block's signed header on MQTT, and an auditor's trusted head from it."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
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
from paho.mqtt.enums import CallbackAPIVersion

from gateway.checkpoints import Checkpoint
from gateway.cli import main
from gateway.mosquitto import Mosquitto
from gateway.store import Store
from ledger import ChainBuilder, FormatError, SignatureError, SigningKey
from ledger.merkle import hash_leaf

__all__ = ["reap_gateways"]  # the autouse fixture, imported so that pytest finds it

KEY = SigningKey.from_seed(bytes(range(32)))


def sealed_checkpoint() -> Checkpoint:
    sealed = ChainBuilder("gw-cp", KEY).seal([hash_leaf(b"x")], 10, 20, 30)
    return Checkpoint(sealed.header_bytes, sealed.signature)


def test_a_checkpoint_round_trips_and_verifies() -> None:
    checkpoint = sealed_checkpoint()
    message = json.loads(checkpoint.to_json())
    assert message["height"] == 0
    assert message["gateway_id"] == "gw-cp"
    assert message["block_hash"] == checkpoint.block_hash.hex()
    parsed = Checkpoint.from_json(checkpoint.to_json())
    assert parsed == checkpoint
    assert parsed.verify(KEY.public_key).height == 0
    with pytest.raises(SignatureError):
        parsed.verify(SigningKey.generate().public_key)


def _edited(**members: object) -> bytes:
    message = json.loads(sealed_checkpoint().to_json())
    message.update(members)
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"{", "not JSON", id="not-json"),
        pytest.param(b"[]", "not a JSON object", id="array"),
        pytest.param(_edited(format="anchorgate-checkpoint/9"), "format", id="format"),
        pytest.param(_edited(extra=1), "unknown members: extra", id="extra-member"),
        pytest.param(_edited(height=5), "height does not match", id="height-claim"),
        pytest.param(_edited(block_hash="00" * 32), "block_hash does not match", id="hash"),
        pytest.param(_edited(signature="***"), "signature: not base64", id="signature-b64"),
        pytest.param(
            _edited(header=base64.b64encode(b"\x01").decode()), "block header", id="header"
        ),
    ],
)
def test_a_bad_checkpoint_is_refused_naming_what(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        Checkpoint.from_json(data)


def test_the_topic_is_checked_at_start(tmp_path: Path) -> None:
    from gateway.config_load import parse_config
    from gateway.errors import ConfigError

    config = parse_config('[gateway]\nid = "gw-9"', environ={})
    assert config.gateway.checkpoints == "anchorgate/checkpoints/gw-9"
    assert parse_config('[gateway]\ncheckpoint_topic = ""').gateway.checkpoints is None
    with pytest.raises(ConfigError, match=r"gateway\.checkpoint_topic"):
        parse_config('[gateway]\ncheckpoint_topic = "heads/#"')


class Witness:
    """A subscriber that keeps every checkpoint message it gets."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.messages: list[tuple[bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex)
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (bytes(m.payload), m.retain)
        )
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.broker
def test_checkpoints_are_published_and_a_saved_one_is_a_trusted_head(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "gw", broker, max_readings=100, max_delay=0.2)
    topic = "anchorgate/checkpoints/gw-test"
    witness = Witness(broker, topic)
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    gateway.wait_connected()
    publish_all(broker, readings(devices=4, count=100))
    wait_for(gateway, stored=100, queue_depth=0)
    publish_all(broker, readings(devices=4, count=200, start_seq=100)[100:])
    wait_for(gateway, stored=200, queue_depth=0)
    assert gateway.terminate() == 0
    witness.close()

    key = SigningKey.load(tmp_path / "gw" / "gateway.key")
    with Store.open(load(config).store.path) as store:
        blocks = store.blocks()
    seen = [Checkpoint.from_json(payload) for payload, _ in witness.messages]
    assert [c.block_hash for c in seen] == [b.block_hash for b in blocks]
    assert all(c.verify(key.public_key) for c in seen)

    # A witness that connects later gets the newest head, retained by the broker.
    late = Witness(broker, topic)
    try:
        for _ in range(100):
            if late.messages:
                break
            threading.Event().wait(0.05)
    finally:
        late.close()
    payload, retained = late.messages[0]
    assert retained
    assert Checkpoint.from_json(payload).block_hash == blocks[-1].block_hash

    # The first checkpoint, saved by the witness, is a head the auditor trusts: the
    # bundle of a later reading must prove that today's chain extends it.
    saved = tmp_path / "first-checkpoint.json"
    saved.write_bytes(witness.messages[0][0])
    public = tmp_path / "gateway.pub"
    key.public_key.save(public)
    bundle = tmp_path / "last.proof.json"
    store_path = str(load(config).store.path)
    last = f"{blocks[-1].height}:0"
    since = seen[0].block_hash.hex()
    argv = ["export", "--store", store_path, "--id", last, "--since-head", since]
    assert main([*argv, "-o", str(bundle)]) == 0, capsys.readouterr().err
    assert main(["verify", str(bundle), "--key", str(public), "--checkpoint", str(saved)]) == 0
    # A forged checkpoint (another key signed it) is refused, not trusted.
    forged = Checkpoint(seen[0].header, SigningKey.generate().sign(seen[0].header))
    saved.write_bytes(forged.to_json())
    capsys.readouterr()
    assert main(["verify", str(bundle), "--key", str(public), "--checkpoint", str(saved)]) == 2
    assert "signature" in capsys.readouterr().err
