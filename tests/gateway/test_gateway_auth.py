"""A broker with passwords: the secret comes from the environment, a wrong one is retried."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_helpers import (
    GatewayProcess,
    publish_all,
    readings,
    reap_gateways,
    wait_for,
    write_config,
)

from gateway.mosquitto import Mosquitto

pytestmark = pytest.mark.broker
__all__ = ["reap_gateways"]  # the autouse fixture, imported so that pytest finds it


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwords = tmp_path / "passwd"
    for user, password in (("gateway", "s3cret"), ("sensor", "pw")):
        subprocess.run(
            [
                "mosquitto_passwd",
                "-b",
                *(["-c"] if user == "gateway" else []),
                str(passwords),
                user,
                password,
            ],
            check=True,
            capture_output=True,
        )
    os.chmod(passwords, 0o600)
    broker = Mosquitto(tmp_path / "broker", extra_config=[f"password_file {passwords}"])
    text = broker.config_path.read_text().replace("allow_anonymous true", "allow_anonymous false")
    broker.config_path.write_text(text)
    broker.start()
    yield broker
    broker.stop()


def gateway_config(directory: Path, broker: Mosquitto, password_env: str) -> Path:
    config = write_config(directory, broker)
    text = config.read_text().replace(
        "[mqtt]\n", f'[mqtt]\nusername = "gateway"\npassword_env = "{password_env}"\n'
    )
    config.write_text(text)
    return config


def test_password_from_the_environment_connects_and_ingests(
    auth_broker: Mosquitto, tmp_path: Path
) -> None:
    config = gateway_config(tmp_path / "gw", auth_broker, "GW_TEST_PASSWORD")
    assert "s3cret" not in config.read_text()
    gateway = GatewayProcess(config, tmp_path / "gw.log", env={"GW_TEST_PASSWORD": "s3cret"})
    gateway.wait_connected()
    publish_all(auth_broker, readings(3, 50), auth=("sensor", "pw"))
    wait_for(gateway, stored=50, queue_depth=0)
    assert gateway.terminate() == 0


def test_a_wrong_password_is_logged_and_retried_without_crashing(
    auth_broker: Mosquitto, tmp_path: Path
) -> None:
    config = gateway_config(tmp_path / "gw", auth_broker, "GW_TEST_PASSWORD")
    gateway = GatewayProcess(config, tmp_path / "gw.log", env={"GW_TEST_PASSWORD": "wrong"})
    deadline = time.monotonic() + 15
    while gateway.log().count("mqtt.refused") < 2:
        assert time.monotonic() < deadline, gateway.log()
        time.sleep(0.05)
    assert "check credentials" in gateway.log()
    assert "Traceback" not in gateway.log()
    assert gateway.terminate() == 0


def test_a_missing_password_variable_is_a_config_error(
    auth_broker: Mosquitto, tmp_path: Path
) -> None:
    config = gateway_config(tmp_path / "gw", auth_broker, "GW_TEST_PASSWORD_UNSET")
    gateway = GatewayProcess(config, tmp_path / "gw.log")
    assert gateway.wait(20) == 2
    assert (
        "mqtt.password_env: the environment variable GW_TEST_PASSWORD_UNSET is not set"
        in gateway.log()
    )
