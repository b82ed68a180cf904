"""The device registry file and the ``anchorgate devices`` commands."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from device_helpers import KEYS, registry

from gateway.cli import main
from gateway.config_load import parse_config
from gateway.devices import (
    Registry,
    RegistryFile,
    dump_registry,
    load_registry,
    parse_registry,
    save_registry,
)
from gateway.errors import ConfigError
from ledger import PublicKey, SigningKey

HEX = "ed25519:" + KEYS["dev-a"].public_key.raw.hex()


def test_registry_round_trips_through_toml(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    save_registry(registry(), path)
    assert load_registry(path) == registry()
    assert dump_registry(load_registry(path)) == path.read_text()
    assert load_registry(tmp_path / "missing.toml") == Registry()


def test_a_pem_public_key_is_accepted_in_the_file() -> None:
    pem = KEYS["dev-a"].public_key.to_pem().decode()
    text = f'[devices."d1"]\npublic_key = """{pem}"""\nasset = "a1"\n'
    assert parse_registry(text).devices["d1"].public_key == KEYS["dev-a"].public_key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("version = 2", "version 2 is not known", id="version"),
        pytest.param("colour = 1", "colour: unknown key", id="top-key"),
        pytest.param('[devices."d1"]\nasset = "a"', 'devices."d1".public_key: missing', id="key"),
        pytest.param(
            f'[devices."d1"]\npublic_key = "{HEX}"', 'devices."d1".asset: missing', id="asset"
        ),
        pytest.param(
            '[devices."d1"]\npublic_key = "ed25519:00"\nasset = "a"', "64 hex digits", id="hex"
        ),
        pytest.param(
            f'[devices."d1"]\npublic_key = "{HEX}"\nasset = "a"\nrequire_signature = "yes"',
            "require_signature: must be true or false",
            id="require",
        ),
        pytest.param(
            f'[devices."d1"]\npublic_key = "{HEX}"\nasset = "a"\nowner = "x"',
            'devices."d1".owner: unknown key',
            id="device-key",
        ),
        pytest.param(
            f'[devices."bad id"]\npublic_key = "{HEX}"\nasset = "a"', "must be 1 to 64", id="id"
        ),
        pytest.param("[devices", "not valid TOML", id="toml"),
    ],
)
def test_registry_mistakes_name_the_device_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_registry(text, "devices.toml")


def test_registry_file_reloads_changes_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    save_registry(registry(), path)
    now = [0.0]
    errors: list[str] = []
    watched = RegistryFile(path, clock=lambda: now[0], on_error=errors.append)
    assert watched.current().get("dev-a") is not None
    save_registry(registry().revoked("dev-a", "2026-11-24T02:00:00Z"), path)
    assert watched.current().get("dev-a").revoked is None  # type: ignore[union-attr]
    now[0] = 1.5  # the file is looked at again after a second
    assert watched.current().get("dev-a").revoked == "2026-11-24T02:00:00Z"  # type: ignore[union-attr]
    path.write_text("[devices\n")
    now[0] = 3.0
    assert watched.current().get("dev-a") is not None  # the last good registry stays
    now[0] = 4.5
    watched.current()
    assert len(errors) == 1
    assert "not valid TOML" in errors[0]


def test_config_devices_section() -> None:
    config = parse_config('[devices]\nregistry = "reg.toml"\nrequire_signature = true\n')
    assert config.devices.registry == Path("reg.toml")
    assert config.devices.require_signature
    with pytest.raises(
        ConfigError, match=re.escape("devices.require_signature: needs a device registry")
    ):
        parse_config("[devices]\nrequire_signature = true\n")
    with pytest.raises(ConfigError, match=re.escape("devices.verify_processes: must be")):
        parse_config("[devices]\nverify_processes = -1\n")
    with pytest.raises(ConfigError, match=re.escape("devices.colour: unknown key")):
        parse_config("[devices]\ncolour = 1\n")


def test_cli_keygen_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, reg = tmp_path / "keys", tmp_path / "devices.toml"
    assert main(["devices", "keygen", "hs-1", "hs-2", "--dir", str(keys)]) == 0
    assert stat.S_IMODE(os.stat(keys / "hs-1.key").st_mode) == 0o600
    SigningKey.load(keys / "hs-1.key")
    pub = PublicKey.load(keys / "hs-1.pub")
    assert main(["devices", "keygen", "hs-1", "--dir", str(keys)]) == 2  # never overwrites
    add = ["devices", "add", "--registry", str(reg), "--public-key"]
    assert (
        main([*add, str(keys / "hs-1.pub"), "hs-1", "--asset", "rack-1", "--require-signature"])
        == 0
    )
    assert main([*add, str(keys / "hs-2.pub"), "hs-2", "--asset", "rack-2"]) == 0
    assert main([*add, str(keys / "hs-2.pub"), "hs-2", "--asset", "rack-2"]) == 2
    assert main(["devices", "revoke", "hs-2", "--registry", str(reg)]) == 0
    assert main(["devices", "revoke", "hs-2", "--registry", str(reg)]) == 2
    assert main(["devices", "revoke", "nobody", "--registry", str(reg)]) == 2
    capsys.readouterr()
    assert main(["devices", "list", "--json", "--registry", str(reg)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["device_id"], d["asset"], d["require_signature"]) for d in listed] == [
        ("hs-1", "rack-1", True),
        ("hs-2", "rack-2", None),
    ]
    assert listed[0]["key_id"] == pub.key_id.hex()
    assert listed[0]["revoked"] is None
    assert listed[1]["revoked"] is not None
    assert main(["devices", "list", "--registry", str(reg)]) == 0
    text = capsys.readouterr().out
    assert "hs-1" in text
    assert "revoked" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["list"], "no device registry", id="no-registry"),
        pytest.param(
            ["add", "d1", "--public-key", "nope.pub", "--asset", "a", "--registry", "r.toml"],
            "--public-key: nope.pub: cannot read public key",
            id="no-key-file",
        ),
        pytest.param(["keygen", "bad id"], "not a valid device id", id="bad-id"),
    ],
)
def test_cli_mistakes_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["devices", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_cli_finds_the_registry_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[devices]\nregistry = "{tmp_path / "reg.toml"}"\n')
    key = tmp_path / "d.pub"
    KEYS["dev-a"].public_key.save(key)
    assert (
        main(["devices", "add", "d1", "--public-key", str(key), "--asset", "a", "-c", str(config)])
        == 0
    )
    assert load_registry(tmp_path / "reg.toml").devices["d1"].asset == "a"


@pytest.mark.parametrize("command", ["keygen", "add", "list", "revoke"])
def test_every_devices_command_has_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devices", command, "--help"]) == 0
    assert "Example" in capsys.readouterr().out
