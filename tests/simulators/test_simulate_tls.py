"""TLS and credentials against a real Mosquitto: a CA, a server certificate, a password file."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sim_helpers import scenario

from gateway.mosquitto import Mosquitto, free_port
from simulators.errors import PublishError
from simulators.runner import new_manifest, run_scenario

pytestmark = pytest.mark.broker


def write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anchorgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, int, Path]]:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, cert, key = write_pki(pki)
    passwords = pki / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "sim", "s3cret"],
        check=True,
        capture_output=True,
    )
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path / "broker",
        extra_config=[
            "allow_anonymous false",
            f"password_file {passwords}",
            f"listener {tls_port} 127.0.0.1",
            f"cafile {ca}",
            f"certfile {cert}",
            f"keyfile {key}",
        ],
    )
    broker.start()
    yield broker, tls_port, ca
    broker.stop()


async def test_publishes_over_tls_with_credentials(tls_broker: tuple[Mosquitto, int, Path]) -> None:
    broker, tls_port, ca = tls_broker
    sc = scenario(
        duration=1,
        groups=[{"name": "hs", "model": "heat_sink", "count": 5, "interval": 0.1}],
        broker={
            "port": tls_port,
            "tls": True,
            "ca_file": str(ca),
            "username": "sim",
            "password": "s3cret",
        },
    )
    manifest = new_manifest(sc)
    await run_scenario(sc, manifest)
    assert manifest.complete
    assert manifest.readings == 50
    assert "New client connected" in broker.log()
    assert "u'sim'" in broker.log()


async def test_wrong_password_is_a_one_line_publish_error(
    tls_broker: tuple[Mosquitto, int, Path],
) -> None:
    _, tls_port, ca = tls_broker
    sc = scenario(
        duration=1,
        broker={
            "port": tls_port,
            "tls": True,
            "ca_file": str(ca),
            "username": "sim",
            "password": "wrong",
        },
    )
    with pytest.raises(PublishError) as info:
        await run_scenario(sc, new_manifest(sc))
    message = str(info.value)
    assert message.startswith(f"cannot connect to MQTT broker 127.0.0.1:{tls_port}: ")
    assert "\n" not in message


# paho-mqtt 2.2 does not close the socket when the TLS handshake fails
# (Client._ssl_wrap_socket); Python reports it when the socket is collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_untrusted_server_certificate_is_refused(
    tls_broker: tuple[Mosquitto, int, Path], tmp_path: Path
) -> None:
    _, tls_port, _ = tls_broker
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _, _ = write_pki(other)
    sc = scenario(
        duration=1,
        broker={
            "port": tls_port,
            "tls": True,
            "ca_file": str(other_ca),
            "username": "sim",
            "password": "s3cret",
        },
    )
    with pytest.raises(PublishError, match="certificate verify failed"):
        await run_scenario(sc, new_manifest(sc))
