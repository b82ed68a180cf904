"""Ed25519 signing keys for gateways, and the public keys auditors receive.

Files (docs/FORMAT.md, "Keys"):

- private key: PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``), unencrypted, written with
  mode 0600; loading refuses a file that group or others can access, naming the file
  and the ``chmod`` that fixes it.
- public key: SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``), which any
  language's crypto library reads.

``key_id = SHA-256(raw 32-byte Ed25519 public key)``; block headers carry it so a
verifier knows which key signed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import KeyFileError, SignatureError

KeyId = NewType("KeyId", bytes)

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def key_id_of(raw_public_key: bytes) -> KeyId:
    """SHA-256 of the raw 32-byte Ed25519 public key."""
    return KeyId(hashlib.sha256(raw_public_key).digest())


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key and its key id."""

    raw: bytes

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != PUBLIC_KEY_SIZE:
            raise KeyFileError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")

    @property
    def key_id(self) -> KeyId:
        return key_id_of(self.raw)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise SignatureError unless ``signature`` is this key's signature of ``data``."""
        if len(signature) != SIGNATURE_SIZE:
            raise SignatureError(f"signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except InvalidSignature:
            raise SignatureError(
                f"signature does not verify under key {self.key_id.hex()[:16]}"
            ) from None

    def to_pem(self) -> bytes:
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, data: bytes, source: str = "public key") -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{source}: not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{source}: not an Ed25519 public key")
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def save(self, path: Path | str) -> None:
        Path(path).write_bytes(self.to_pem())

    @classmethod
    def load(cls, path: Path | str) -> PublicKey:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read public key ({exc.strerror})") from None
        return cls.from_pem(data, str(path))


class SigningKey:
    """A gateway's Ed25519 private key."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = PublicKey(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key whose 32-byte private seed is ``seed`` (for test vectors)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def key_id(self) -> KeyId:
        return self.public_key.key_id

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def save(self, path: Path | str) -> None:
        """Write the private key as PKCS#8 PEM, created with mode 0600; never overwrite."""
        path = Path(path)
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot create key file ({exc.strerror})") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)

    @classmethod
    def load(cls, path: Path | str) -> SigningKey:
        """Read a private key, refusing one that group or others can access."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read private key ({exc.strerror})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path}: private key is accessible by group or others (mode "
                f"{stat.S_IMODE(mode):04o}); run 'chmod 600 {path}'"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 private key")
        return cls(key)
