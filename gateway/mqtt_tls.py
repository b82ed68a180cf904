"""Transport security for MQTT connections, shared by the gateway and the simulators.

Two things live here, so that both ends of the broker apply one policy:

- :func:`client_context` builds the client's :class:`ssl.SSLContext`:
  ``PROTOCOL_TLS_CLIENT`` (so the server's certificate chain is verified *and* its
  name must match the host we dial: an IP address needs an IP subjectAltName), TLS 1.2
  at least, the CA file given or else the system's CAs, and a client certificate and
  key for mutual TLS. A file that is missing, unreadable or not what it should be
  raises :class:`TlsFileError` saying which of the three it was; each caller turns
  that into its own error naming its own key (``mqtt.tls_ca_file``, ``ca_file``).
- :func:`is_loopback` decides whether plain TCP is acceptable without
  ``allow_insecure``: only to this machine (127.0.0.0/8, ::1, ``localhost``).
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Literal

TlsRole = Literal["ca", "cert", "key"]

_PEM_MARKERS: dict[TlsRole, tuple[bytes, str]] = {
    "ca": (b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
    "cert": (b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
    "key": (b"PRIVATE KEY-----", "a PEM private key"),
}


class TlsFileError(ValueError):
    """A CA, certificate or key file cannot be used; ``role`` says which one."""

    def __init__(self, role: TlsRole, problem: str) -> None:
        super().__init__(problem)
        self.role = role
        self.problem = problem


def is_loopback(host: str) -> bool:
    """True for an address of this machine: 127.0.0.0/8, ::1 or the name localhost."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_pem(role: TlsRole, path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsFileError(role, f"cannot read {path}: {exc.strerror}") from None
    marker, what = _PEM_MARKERS[role]
    if marker not in data:
        raise TlsFileError(role, f"{path} is not {what}")


def client_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext:
    """A verifying TLS client context; raises :class:`TlsFileError` for a bad file."""
    if (cert_file is None) != (key_file is None):
        role: TlsRole = "key" if key_file is None else "cert"
        raise TlsFileError(role, "a client certificate and its key go together")
    # PROTOCOL_TLS_CLIENT sets CERT_REQUIRED and check_hostname.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is None:
        context.load_default_certs()
    else:
        _read_pem("ca", ca_file)
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except ssl.SSLError as exc:
            raise TlsFileError("ca", f"{ca_file}: not a usable CA certificate: {exc}") from None
    if cert_file is not None and key_file is not None:
        _read_pem("cert", cert_file)
        _read_pem("key", key_file)
        try:
            # An encrypted key would make OpenSSL prompt on the terminal: refuse instead.
            context.load_cert_chain(str(cert_file), str(key_file), password=_no_passphrase)
        except ssl.SSLError as exc:
            raise TlsFileError(
                "key",
                f"{key_file} does not go with {cert_file}, or is encrypted "
                f"(keys must be unencrypted PEM): {exc.reason or exc}",
            ) from None
    return context


def _no_passphrase() -> bytes:
    raise TlsFileError("key", "the private key is encrypted; give an unencrypted PEM key")


def describe_tls_failure(exc: BaseException) -> str | None:
    """A one-line explanation of a failed TLS handshake, or None if ``exc`` is not one."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"the broker's certificate was not accepted (certificate verify failed: {detail})"
    if isinstance(exc, ssl.CertificateError):  # pragma: no cover - paho's own name check
        return f"the broker's certificate does not match the host: {exc}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if "CERTIFICATE_REQUIRED" in reason.upper():
            return "the broker requires a client certificate (set a certificate and key)"
        return f"TLS handshake failed: {reason}"
    return None
