"""Broker connection options of the gateway and the simulators: TLS files and allow_insecure.

Files are checked when the configuration is read, each mistake naming its key; plain
TCP is accepted only to loopback unless allow_insecure says otherwise, and then the
gateway warns (checked against a real broker on a non-loopback address of this host).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from tls_certs import Pki, make_pki

from gateway.cli import main
from gateway.config_load import parse_config
from gateway.errors import ConfigError
from gateway.mosquitto import Mosquitto, free_port
from gateway.mqtt_tls import client_context, is_loopback
from simulators.errors import ScenarioError
from simulators.scenario import Scenario, scenario_from_mapping

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
from gateway_helpers import GatewayProcess, reap_gateways, write_config

__all__ = ["reap_gateways"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), ("gateway",))


def mqtt(lines: str) -> str:
    return "[mqtt]\n" + lines


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("10.0.0.5", False),
        ("broker.lan", False),
        ("localhost.example.com", False),
        ("::ffff:10.0.0.5", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_plain_tcp_to_loopback_needs_nothing(host: str) -> None:
    config = parse_config(mqtt(f'host = "{host}"'), environ={})
    assert not config.mqtt.uses_tls
    assert not config.mqtt.insecure


def test_plain_tcp_to_another_host_is_refused_naming_the_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(mqtt('host = "broker.lan"'), environ={})
    message = str(info.value)
    assert message.startswith("mqtt.host: 'broker.lan' is not a loopback address and TLS is off")
    assert "mqtt.allow_insecure = true" in message
    assert "mqtt.tls_ca_file" in message


def test_allow_insecure_accepts_plain_tcp_and_marks_it() -> None:
    config = parse_config(mqtt('host = "broker.lan"\nallow_insecure = true'), environ={})
    assert config.mqtt.insecure


def test_tls_on_another_host_needs_no_allow_insecure(pki: Pki) -> None:
    config = parse_config(mqtt(f'host = "broker.lan"\ntls_ca_file = "{pki.ca}"'), environ={})
    assert config.mqtt.uses_tls
    assert not config.mqtt.insecure
    context = config.mqtt.ssl_context()
    assert context is not None
    assert context.check_hostname  # the broker's name is verified, not only its chain
    # tls = true alone: the system's CAs.
    assert parse_config(mqtt('host = "broker.lan"\ntls = true'), environ={}).mqtt.uses_tls


def bad_files(pki: Pki, tmp_path: Path) -> list[tuple[str, str]]:
    cert, key = pki.client("gateway")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other = make_pki(tmp_path / "other", ("gateway",))
    cert_as_key = tmp_path / "cert-as-key.pem"  # private (0600), so its content is read
    cert_as_key.write_bytes(cert.read_bytes())
    cert_as_key.chmod(0o600)
    return [
        (f'tls_ca_file = "{tmp_path / "missing.pem"}"', "mqtt.tls_ca_file: cannot read"),
        (f'tls_ca_file = "{garbage}"', "mqtt.tls_ca_file: .* is not a PEM certificate"),
        (f'tls_cert_file = "{cert}"', "mqtt.tls_key_file: tls_cert_file and tls_key_file go"),
        (
            f'tls_cert_file = "{garbage}"\ntls_key_file = "{key}"',
            "mqtt.tls_cert_file: .* is not a PEM certificate",
        ),
        (
            f'tls_cert_file = "{cert}"\ntls_key_file = "{cert_as_key}"',
            "mqtt.tls_key_file: .* is not a PEM private key",
        ),
        (
            f'tls_cert_file = "{cert}"\ntls_key_file = "{other.client("gateway")[1]}"',
            "mqtt.tls_key_file: .* does not go with",
        ),
    ]


def test_bad_tls_files_are_config_errors_naming_the_key(pki: Pki, tmp_path: Path) -> None:
    for lines, message in bad_files(pki, tmp_path):
        with pytest.raises(ConfigError, match=message):
            parse_config(mqtt(lines), environ={})


def test_an_encrypted_client_key_is_refused_not_prompted_for(pki: Pki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    cert, key = pki.client("gateway")
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ConfigError, match=r"mqtt\.tls_key_file: .*encrypted"):
        parse_config(mqtt(f'tls_cert_file = "{cert}"\ntls_key_file = "{encrypted}"'), environ={})
    # The same helper serves the simulators.
    assert client_context(pki.ca, cert, key).check_hostname


# -- the simulators -------------------------------------------------------------------


def scenario(broker: dict[str, object], environ: dict[str, str] | None = None) -> Scenario:
    data = {
        "name": "t",
        "duration": 1,
        "groups": [{"name": "hs", "model": "heat_sink", "count": 1, "interval": 1}],
        "broker": broker,
    }
    return scenario_from_mapping(data, "s.toml", Path("."), environ=environ or {})


def test_simulator_plain_tcp_rules() -> None:
    scenario({"host": "localhost"})
    with pytest.raises(ScenarioError, match=r"s.toml: \[broker\]: 'host' '10.1.2.3' is not a"):
        scenario({"host": "10.1.2.3"})
    settings = scenario({"host": "10.1.2.3", "allow_insecure": True}).broker
    assert settings.insecure


def test_simulator_tls_files_are_checked_naming_the_key(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.client("gateway")
    ok = scenario(
        {"host": "broker.lan", "ca_file": str(pki.ca), "cert_file": str(cert), "key_file": str(key)}
    )
    assert ok.broker.uses_tls
    with pytest.raises(ScenarioError, match=r"\[broker\]: 'ca_file' cannot read"):
        scenario({"ca_file": str(tmp_path / "missing.pem")})
    cert_as_key = tmp_path / "cert-as-key.pem"
    cert_as_key.write_bytes(cert.read_bytes())
    cert_as_key.chmod(0o600)
    with pytest.raises(ScenarioError, match=r"\[broker\]: 'key_file' .* is not a PEM private key"):
        scenario({"cert_file": str(cert), "key_file": str(cert_as_key)})
    shared = tmp_path / "shared-key.pem"
    shared.write_bytes(key.read_bytes())
    shared.chmod(0o640)
    with pytest.raises(ScenarioError, match=r"\[broker\]: 'key_file': .* by group or others"):
        scenario({"cert_file": str(cert), "key_file": str(shared)})
    with pytest.raises(ScenarioError, match=r"'cert_file' and 'key_file' go together"):
        scenario({"cert_file": str(cert)})


def test_simulator_password_from_environment_or_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    env = scenario({"username": "u", "password_env": "SIM_PW"}, {"SIM_PW": "from-env"})
    assert env.broker.password == "from-env"
    assert "from-env" not in repr(env)
    assert scenario({"password_file": str(secret)}).broker.password == "from-file"
    with pytest.raises(ScenarioError, match="'password_env': the environment variable SIM_PW"):
        scenario({"password_env": "SIM_PW"})
    with pytest.raises(ScenarioError, match="'password_file': cannot read"):
        scenario({"password_file": str(tmp_path / "nope")})
    secret.chmod(0o644)
    with pytest.raises(ScenarioError, match=r"'password_file': .* run: chmod 600"):
        scenario({"password_file": str(secret)})
    with pytest.raises(ScenarioError, match="'password' cannot be combined"):
        scenario({"password": "x", "password_env": "SIM_PW"})


# -- allow_insecure against a real broker --------------------------------------------


def non_loopback_address() -> str | None:
    """An IPv4 address of this host that is not loopback (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks a source address
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if is_loopback(address) else address


@pytest.mark.broker
def test_gateway_refuses_then_warns_for_plain_tcp_off_loopback(tmp_path: Path) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    port = free_port()
    broker = Mosquitto(
        tmp_path / "broker",
        port=port,
        listener=False,
        extra_config=[f"listener {port} {address}", "allow_anonymous true"],
    )
    broker.host = address
    broker.start()
    try:
        config = write_config(tmp_path / "gw", broker)
        refused = GatewayProcess(config, tmp_path / "refused.log")
        assert refused.wait(20) == 2
        assert f"mqtt.host: '{address}' is not a loopback address" in refused.log()
        config.write_text(config.read_text().replace("[mqtt]\n", "[mqtt]\nallow_insecure = true\n"))
        gateway = GatewayProcess(config, tmp_path / "gw.log")
        gateway.wait_connected()
        assert "mqtt.insecure" in gateway.log()
        assert gateway.terminate() == 0
    finally:
        broker.stop()


# -- the simulate command's flags ------------------------------------------------------

DEMO = str(Path(__file__).parents[2] / "config" / "scenarios" / "demo.toml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--host", "10.1.2.3"],
            "[broker]: 'host' '10.1.2.3' is not a loopback address and TLS is off",
            id="plain-tcp-off-loopback",
        ),
        pytest.param(
            ["--password-env", "ANCHORGATE_TEST_UNSET"],
            "'--password-env': the environment variable ANCHORGATE_TEST_UNSET is not set",
            id="password-env",
        ),
        pytest.param(
            ["--password-file", "/nonexistent/pw"],
            "'--password-file': cannot read /nonexistent/pw",
            id="password-file",
        ),
        pytest.param(
            ["--password", "x", "--password-env", "X"], "--password: give it or", id="both"
        ),
    ],
)
def test_simulate_broker_flags_are_checked(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "-s", DEMO, "--duration", "0.1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.broker
def test_simulate_allow_insecure_warns(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A non-loopback address of this host where nothing listens: a warning, then the
    # connection is refused at once.
    address = non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    code = main(
        [
            "simulate",
            "-s",
            DEMO,
            "--duration",
            "0.1",
            "--host",
            address,
            "--port",
            str(free_port()),
            "--allow-insecure",
            "--manifest",
            str(tmp_path / "m.json"),
        ]
    )
    err = capsys.readouterr().err
    assert f"warning: plain TCP to {address} (allow_insecure)" in err
    assert code == 1
    assert "cannot connect to MQTT broker" in err
