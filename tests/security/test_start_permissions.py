"""At start the gateway refuses files that others could read or replace, naming file and fix.

Real files, real modes, and the real ``anchorgate run`` (which stops before it would
connect to a broker, so none is needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config_load import parse_config
from gateway.errors import ConfigError
from gateway.permissions import check_store_permissions
from ledger import SigningKey


def gateway_setup(directory: Path, store_dir: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    SigningKey.generate().save(directory / "gateway.key")
    config = directory / "gateway.toml"
    config.write_text(
        f"""
[gateway]
key_file = "{directory / "gateway.key"}"
[mqtt]
port = 1
[store]
path = "{store_dir / "gateway.duckdb"}"
[health]
file = ""
[api]
enabled = false
"""
    )
    return config


def run_gateway(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", "-c", str(config)])
    return code, capsys.readouterr().err


def test_a_world_writable_store_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    code, err = run_gateway(gateway_setup(tmp_path, shared), capsys)
    assert code != 0
    assert f"store directory {shared} is writable by everyone (mode 0777)" in err
    assert f"chmod o-w {shared}" in err
    assert not (shared / "gateway.duckdb").exists()


def test_a_world_writable_store_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "data"
    store_dir.mkdir(mode=0o700)
    store = store_dir / "gateway.duckdb"
    store.write_bytes(b"")
    store.chmod(0o666)
    code, err = run_gateway(gateway_setup(tmp_path, store_dir), capsys)
    assert code != 0
    assert f"store file {store} is writable by everyone (mode 0666)" in err


def test_a_store_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "gateway.duckdb"
    store.write_bytes(b"")
    someone_else = os.getuid() + 4242
    with pytest.raises(ConfigError, match=rf"belongs to user id {os.getuid()}.*chown"):
        check_store_permissions(store, uid=someone_else)


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_a_store_chowned_to_nobody_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "gateway.duckdb"
    store.write_bytes(b"")
    os.chown(store, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to user id 65534"):
        check_store_permissions(store)
    wal = tmp_path / "other.duckdb.wal"
    wal.write_bytes(b"")
    os.chown(wal, 65534, 65534)
    with pytest.raises(ConfigError, match=r"other\.duckdb\.wal belongs to user id 65534"):
        check_store_permissions(tmp_path / "other.duckdb")


def test_a_private_store_passes(tmp_path: Path) -> None:
    store_dir = tmp_path / "data"
    store_dir.mkdir(mode=0o750)
    check_store_permissions(store_dir / "gateway.duckdb")  # not created yet
    (store_dir / "gateway.duckdb").write_bytes(b"")
    check_store_permissions(store_dir / "gateway.duckdb")


def test_a_group_readable_key_stops_the_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "data"
    store_dir.mkdir(mode=0o700)
    config = gateway_setup(tmp_path, store_dir)
    (tmp_path / "gateway.key").chmod(0o640)
    code, err = run_gateway(config, capsys)
    assert code == 2
    assert "gateway.key_file" in err
    assert f"chmod 600 {tmp_path / 'gateway.key'}" in err


@pytest.mark.parametrize(("section", "name"), [("mqtt", "password"), ("api", "token")])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_secret_files_others_can_reach_are_refused(
    tmp_path: Path, section: str, name: str, mode: int
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-long-enough-secret-value\n")
    secret.chmod(mode)
    text = f'[{section}]\n{name}_file = "{secret}"'
    with pytest.raises(ConfigError, match=rf"{section}\.{name}_file: .*chmod 600 {secret}"):
        parse_config(text, environ={})
    secret.chmod(0o600)
    assert getattr(getattr(parse_config(text, environ={}), section), name) == (
        "a-long-enough-secret-value"
    )


def test_a_tls_client_key_others_can_read_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("not read: the mode is checked first\n")
    key.chmod(0o644)
    text = (
        f'[mqtt]\ntls_ca_file = "{tmp_path / "ca.pem"}"\n'
        f'tls_cert_file = "{tmp_path / "client.pem"}"\ntls_key_file = "{key}"'
    )
    with pytest.raises(ConfigError, match=rf"mqtt\.tls_key_file: .*chmod 600 {key}"):
        parse_config(text, environ={})
