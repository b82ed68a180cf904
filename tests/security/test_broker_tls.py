"""The shipped secure broker setup, for real: TLS, mutual TLS, passwords and the ACL.

Each test starts Mosquitto from config/mosquitto-secure.conf (paths and ports
rewritten for the test directory) with the shipped config/mosquitto.acl verbatim, a
password file made by mosquitto_passwd and certificates made by tests/security/
tls_certs.py. The gateway runs as a real ``anchorgate run`` process; devices publish
through the simulators' publisher, each device with its own user (= its device id).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from tls_certs import Pki, make_pki

from gateway.mosquitto import Mosquitto, free_port
from gateway.mqtt_tls import client_context
from simulators.broker_settings import BrokerSettings
from simulators.errors import PublishError
from simulators.publisher import Publisher

# The gateway tests' helpers (a gateway subprocess, its config, store checks); tests/
# has no __init__.py, so their directory goes on the path as pytest does for its own.
sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
from gateway_helpers import (
    REPO,
    GatewayProcess,
    readings,
    reap_gateways,
    stored_count,
    verify_store,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.broker
__all__ = ["reap_gateways"]  # the autouse fixture, imported so that pytest finds it

PASSWORDS = {"gateway": "gw-s3cret", "dev-000": "pw-000", "dev-001": "pw-001"}
CLIENTS = ("gateway", "dev-000")  # users that get a client certificate


@dataclass
class SecureBroker:
    broker: Mosquitto
    pki: Pki
    directory: Path

    @property
    def port(self) -> int:
        return self.broker.port


def secure_broker_config(directory: Path, pki: Pki, tls_port: int, *, mtls: bool) -> list[str]:
    """config/mosquitto-secure.conf with this test's files and ports in place."""
    passwords = directory / "passwd"
    for n, (user, password) in enumerate(PASSWORDS.items()):
        subprocess.run(
            ["mosquitto_passwd", "-b", *(["-c"] if n == 0 else []), str(passwords), user, password],
            check=True,
            capture_output=True,
        )
    os.chmod(passwords, 0o600)
    replace = {
        "password_file": f"password_file {passwords}",
        "acl_file": f"acl_file {REPO / 'config' / 'mosquitto.acl'}",
        "listener 1883": f"listener {free_port()} 127.0.0.1",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "cafile": f"cafile {pki.ca}",
        "certfile": f"certfile {pki.server_cert}",
        "keyfile": f"keyfile {pki.server_key}",
        "# require_certificate": "require_certificate true" if mtls else "",
        "persistence_location": "",  # the launcher sets these
        "log_dest": "",
        "log_type": "",
        "persistence ": "",
    }
    lines = []
    shipped = (REPO / "config" / "mosquitto-secure.conf").read_text().splitlines()
    for shipped_line in shipped:
        line = next(
            (new for prefix, new in replace.items() if shipped_line.startswith(prefix)),
            shipped_line,
        )
        if line and not line.startswith("#"):
            lines.append(line)
    assert "allow_anonymous false" in lines
    assert "per_listener_settings false" in lines
    return lines


def start_secure_broker(
    directory: Path, *, mtls: bool, server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> SecureBroker:
    pki = make_pki(directory / "pki", CLIENTS, server_names)
    tls_port = free_port()
    config = secure_broker_config(directory, pki, tls_port, mtls=mtls)
    broker = Mosquitto(directory / "broker", port=tls_port, listener=False, extra_config=config)
    broker.start()
    return SecureBroker(broker, pki, directory)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    secure = start_secure_broker(tmp_path, mtls=False)
    yield secure
    secure.broker.stop()


@pytest.fixture
def mtls_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    secure = start_secure_broker(tmp_path, mtls=True)
    yield secure
    secure.broker.stop()


def gateway_config(
    secure: SecureBroker,
    *,
    password: str = PASSWORDS["gateway"],
    ca: Path | None = None,
    client_cert: bool = False,
) -> Path:
    """A gateway.toml for ``secure`` with TLS and a password file (mode 0600)."""
    directory = secure.directory / "gw"
    config = write_config(directory, secure.broker)
    secret = directory / "mqtt.pass"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    lines = [
        'username = "gateway"',
        f'password_file = "{secret}"',
        f'tls_ca_file = "{ca or secure.pki.ca}"',
    ]
    if client_cert:
        cert, key = secure.pki.client("gateway")
        lines += [f'tls_cert_file = "{cert}"', f'tls_key_file = "{key}"']
    config.write_text(config.read_text().replace("[mqtt]\n", "[mqtt]\n" + "\n".join(lines) + "\n"))
    return config


def device(
    secure: SecureBroker, user: str, *, client_cert: bool = False, ca: Path | None = None
) -> BrokerSettings:
    cert, key = secure.pki.client(user) if client_cert else (None, None)
    return BrokerSettings(
        port=secure.port,
        ca_file=ca or secure.pki.ca,
        cert_file=cert,
        key_file=key,
        username=user,
        password=PASSWORDS[user],
        client_id=f"sim-{user}",
    )


async def publish(settings: BrokerSettings, messages: list[tuple[str, bytes]]) -> None:
    """Publish with QoS 1 through the simulators' publisher; return once all are acked."""
    async with Publisher(settings, qos=1) as publisher:
        for topic, payload in messages:
            publisher.publish(0, topic, payload)
            await publisher.pace()


def wait_logged(gateway: GatewayProcess, text: str, times: int = 1, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while gateway.log().count(text) < times:
        assert time.monotonic() < deadline, gateway.log()
        assert gateway.process.poll() is None, gateway.log()
        time.sleep(0.05)
    return gateway.log()


async def test_gateway_and_devices_over_tls_store_readings(tls_broker: SecureBroker) -> None:
    config = gateway_config(tls_broker)
    gateway = GatewayProcess(config, tls_broker.directory / "gw.log")
    gateway.wait_connected()
    messages = readings(1, 40)  # all from dev-000, on sensors/dev-000/temperature
    await publish(device(tls_broker, "dev-000"), messages)
    wait_for(gateway, stored=40, queue_depth=0)
    assert gateway.terminate() == 0, gateway.log()
    assert {row[0] for row in verify_store(config)} == {"dev-000"}
    log = tls_broker.broker.log()
    assert "u'gateway'" in log
    assert "u'dev-000'" in log
    assert "mqtt.insecure" not in gateway.log()


async def test_mutual_tls_with_client_certificates(mtls_broker: SecureBroker) -> None:
    config = gateway_config(mtls_broker, client_cert=True)
    gateway = GatewayProcess(config, mtls_broker.directory / "gw.log")
    gateway.wait_connected()
    await publish(device(mtls_broker, "dev-000", client_cert=True), readings(1, 25))
    wait_for(gateway, stored=25, queue_depth=0)
    assert gateway.terminate() == 0, gateway.log()


# paho-mqtt 2.2 does not close the socket when the TLS handshake fails
# (Client._ssl_wrap_socket); Python reports it when the socket is collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_clients_without_a_certificate_are_refused_by_an_mtls_broker(
    mtls_broker: SecureBroker,
) -> None:
    config = gateway_config(mtls_broker, client_cert=False)
    gateway = GatewayProcess(config, mtls_broker.directory / "gw.log")
    log = wait_logged(gateway, "mqtt.refused", times=2)
    assert "the broker requires a client certificate" in log
    assert "mqtt.tls_cert_file" in log
    assert "mqtt.connected" not in log
    assert "Traceback" not in log
    assert gateway.terminate() == 0
    with pytest.raises(PublishError, match="cannot connect to MQTT broker"):
        await publish(device(mtls_broker, "dev-000", client_cert=False), readings(1, 1))
    assert "peer did not return a certificate" in mtls_broker.broker.log()


def test_a_wrong_password_is_refused_and_nothing_is_stored(tls_broker: SecureBroker) -> None:
    config = gateway_config(tls_broker, password="not-the-password")
    gateway = GatewayProcess(config, tls_broker.directory / "gw.log")
    log = wait_logged(gateway, "mqtt.refused", times=2)
    assert "Not authorized" in log
    assert "check credentials" in log
    assert "not-the-password" not in log
    assert "mqtt.connected" not in log
    assert "Traceback" not in log
    assert gateway.terminate() == 0
    assert stored_count(config) == 0


async def test_a_wrong_device_password_fails_the_publisher(tls_broker: SecureBroker) -> None:
    settings = device(tls_broker, "dev-000")
    wrong = BrokerSettings(**{**settings.__dict__, "password": "nope"})
    with pytest.raises(PublishError, match="Not authorized"):
        await publish(wrong, readings(1, 1))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_an_untrusted_server_certificate_is_refused(tls_broker: SecureBroker) -> None:
    stranger = make_pki(tls_broker.directory / "stranger")  # a CA that did not sign it
    config = gateway_config(tls_broker, ca=stranger.ca)
    gateway = GatewayProcess(config, tls_broker.directory / "gw.log")
    log = wait_logged(gateway, "mqtt.tls_failed", times=2)
    assert "the broker's certificate was not accepted" in log
    assert "certificate verify failed" in log
    assert "check=" in log
    assert "mqtt.connected" not in log
    assert "Traceback" not in log
    assert gateway.terminate() == 0
    with pytest.raises(PublishError, match="certificate verify failed"):
        await publish(device(tls_broker, "dev-000", ca=stranger.ca), readings(1, 1))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_certificate_for_another_host_name_is_refused(tmp_path: Path) -> None:
    # Signed by the CA the clients trust, but for broker.example, not 127.0.0.1.
    secure = start_secure_broker(tmp_path, mtls=False, server_names=("broker.example",))
    try:
        gateway = GatewayProcess(gateway_config(secure), tmp_path / "gw.log")
        log = wait_logged(gateway, "mqtt.tls_failed", times=2)
        assert "Hostname mismatch" in log or "IP address mismatch" in log
        assert "mqtt.connected" not in log
        assert gateway.terminate() == 0
        with pytest.raises(PublishError, match="mismatch"):
            await publish(device(secure, "dev-000"), readings(1, 1))
    finally:
        secure.broker.stop()


async def test_a_device_cannot_publish_under_another_devices_topic(
    tls_broker: SecureBroker,
) -> None:
    config = gateway_config(tls_broker)
    gateway = GatewayProcess(config, tls_broker.directory / "gw.log")
    gateway.wait_connected()
    own = readings(1, 10)  # dev-000's readings on sensors/dev-000/...
    foreign = [m for m in readings(2, 10, start_seq=100) if "/dev-001/" in m[0]]
    assert len(foreign) == 5
    await publish(device(tls_broker, "dev-000"), own)
    # dev-000 forging dev-001's readings: with MQTT 5 and QoS 1 the broker answers
    # PUBACK "Not authorized" and the publisher says so.
    refused = r"refused \d+ publish\(es\) from user 'dev-000': Not authorized"
    with pytest.raises(PublishError, match=refused):
        await publish(device(tls_broker, "dev-000"), foreign)
    # Afterwards more of dev-000's own readings: once they are stored, anything the
    # broker had let through before them would have been too.
    later = readings(1, 10, start_seq=10)
    await publish(device(tls_broker, "dev-000"), later)
    wait_for(gateway, stored=20, queue_depth=0)
    assert gateway.terminate() == 0, gateway.log()
    stored = verify_store(config)
    assert len(stored) == 20
    assert {row[0] for row in stored} == {"dev-000"}


async def test_only_the_gateway_receives_readings(tls_broker: SecureBroker) -> None:
    config = gateway_config(tls_broker)
    gateway = GatewayProcess(config, tls_broker.directory / "gw.log")
    gateway.wait_connected()
    # dev-001, a valid user with the right password, tries to read everyone's readings.
    snoop = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="snoop",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    snoop.username_pw_set("dev-001", PASSWORDS["dev-001"])
    snoop.tls_set_context(client_context(tls_broker.pki.ca, None, None))
    received: list[str] = []
    subscribed: list[object] = []
    snoop.on_message = lambda client, userdata, message: received.append(message.topic)
    snoop.on_subscribe = lambda client, userdata, mid, codes, props: subscribed.append(codes)
    snoop.connect("127.0.0.1", tls_broker.port)
    snoop.loop_start()
    try:
        snoop.subscribe("sensors/#", qos=1)
        deadline = time.monotonic() + 10
        while not subscribed:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        await publish(device(tls_broker, "dev-000"), readings(1, 30))
        wait_for(gateway, stored=30, queue_depth=0)
        time.sleep(0.5)  # deliveries to the snoop would have arrived by now
    finally:
        snoop.disconnect()
        snoop.loop_stop()
    assert received == []
    assert gateway.terminate() == 0, gateway.log()
