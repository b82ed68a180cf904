"""ledger.keys: key files, permissions, key ids and signatures."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from ledger.errors import KeyFileError, SignatureError
from ledger.keys import PublicKey, SigningKey


def test_save_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "gateway.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = SigningKey.load(path)
    assert loaded.key_id == key.key_id
    key.public_key.save(tmp_path / "gateway.pub")
    public = PublicKey.load(tmp_path / "gateway.pub")
    assert public == key.public_key
    assert public.key_id == hashlib.sha256(public.raw).digest()
    public.verify(loaded.sign(b"data"), b"data")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_group_or_world_readable_private_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "gateway.key"
    SigningKey.generate().save(path)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match=rf"{path}.*chmod 600"):
        SigningKey.load(path)


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "gateway.key"
    SigningKey.generate().save(path)
    with pytest.raises(KeyFileError, match="already exists"):
        SigningKey.generate().save(path)


def test_bad_key_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "none.key"
    with pytest.raises(KeyFileError, match=r"none\.key: cannot read"):
        SigningKey.load(missing)
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match=r"junk\.key: not an unencrypted PEM"):
        SigningKey.load(junk)
    with pytest.raises(KeyFileError, match=r"junk\.key: not a PEM public key"):
        PublicKey.load(junk)


def test_wrong_signatures_fail() -> None:
    key = SigningKey.from_seed(bytes(32))
    signature = key.sign(b"data")
    with pytest.raises(SignatureError):
        key.public_key.verify(signature, b"date")
    with pytest.raises(SignatureError, match="64 bytes"):
        key.public_key.verify(signature[:-1], b"data")
    with pytest.raises(SignatureError):
        SigningKey.generate().public_key.verify(signature, b"data")
