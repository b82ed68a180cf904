"""Loading the configuration: a gateway.toml read with tomllib into gateway.config's values.

:func:`load_config` reads a file and :func:`parse_config` a TOML text into a frozen
:class:`~gateway.config.Config`. They refuse unknown sections and keys, values of the
wrong type and values out of range, always naming the key (``mqtt.port``). Relative
paths are taken relative to the working directory. Secrets (the broker password, the
read API token) are never read from the TOML: an environment variable or a file holds
them, and such a file, like a private key, may be read by its owner only
(:func:`check_private_file`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from gateway.alerts_config import AlertsSection
from gateway.config import ApiSection, Config, InvalidValue, MqttSection
from gateway.errors import ConfigError

_SECTIONS: dict[str, type[Any]] = typing.get_type_hints(Config)
_SECRET_FIELDS = {"password", "token"}


def _convert(value: object, hint: object, key: str) -> object:
    """Check ``value`` against the field's type hint and convert it (str -> Path, list -> tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value == "" and type(None) in args:
            return None  # TOML has no null: an empty string means "not set"
        return _convert(value, inner[0], key)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings")
        return tuple(value)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: must be a non-empty path string")
        return Path(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number, got {type(value).__name__}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {type(value).__name__}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {type(value).__name__}")
        return value
    raise AssertionError(f"unhandled config type {hint!r} for {key}")  # pragma: no cover


def _section(name: str, cls: type[Any], table: object) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: must be a table ([{name}])")
    if name == "alerts":  # nested tables: gateway.alerts parses them, naming every key
        return AlertsSection.from_toml(table, name)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - _SECRET_FIELDS
    values: dict[str, object] = {}
    for key, value in table.items():
        if key not in known:
            hint = ""
            if key in _SECRET_FIELDS:
                hint = f" (secrets never go in the TOML: use {key}_env or {key}_file)"
            raise ConfigError(f"{name}.{key}: unknown key{hint}")
        values[key] = _convert(value, hints[key], f"{name}.{key}")
    try:
        return cls(**values)
    except InvalidValue as exc:
        raise ConfigError(f"{name}.{exc.key}: {exc.problem}") from None


def check_private_file(path: Path, key: str) -> None:
    """Refuse a secret or private key file that group or others may read or write."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{key}: {path} is readable or writable by group or others (mode "
            f"{mode & 0o777:o}); run: chmod 600 {path}"
        )


def read_secret_file(path: Path, key: str) -> str:
    """A secret (password, token) from its file, which only its owner may read or write."""
    check_private_file(path, key)
    try:
        return path.read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{key}: cannot read {path}: {reason}") from None


def _read_secret(
    section: str, name: str, env: str, file: Path | None, environ: Mapping[str, str]
) -> str | None:
    if env:
        if env not in environ:
            raise ConfigError(f"{section}.{name}_env: the environment variable {env} is not set")
        return environ[env]
    if file is not None:
        return read_secret_file(file, f"{section}.{name}_file")
    return None


def parse_config(
    text: str, environ: Mapping[str, str] | None = None, *, broker_secrets: bool = True
) -> Config:
    """Parse the TOML text of a gateway configuration.

    ``broker_secrets=False`` leaves the broker password and TLS files unread: commands
    that only read the store (status, export, audit, devices) must work for an
    operator who may not read the gateway's MQTT credentials.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    for name, table in document.items():
        if name not in _SECTIONS:
            known = ", ".join(f"[{s}]" for s in _SECTIONS)
            raise ConfigError(f"{name}: unknown section (known: {known})")
        sections[name] = _section(name, _SECTIONS[name], table)
    mqtt: MqttSection = sections.get("mqtt", MqttSection())
    if mqtt.password_env and mqtt.password_file is not None:
        raise ConfigError("mqtt.password_file: set password_env or password_file, not both")
    environ = os.environ if environ is None else environ
    if broker_secrets:
        password = _read_secret("mqtt", "password", mqtt.password_env, mqtt.password_file, environ)
        if mqtt.tls_key_file is not None:
            check_private_file(mqtt.tls_key_file, "mqtt.tls_key_file")
        mqtt.ssl_context()  # read and check the TLS files now, so a bad one stops the start
        sections["mqtt"] = dataclasses.replace(mqtt, password=password)
    # The API token is read either way: the store commands send it to a running gateway.
    api: ApiSection = sections.get("api", ApiSection())
    token = _read_secret("api", "token", api.token_env, api.token_file, environ)
    if token is not None:
        try:
            sections["api"] = dataclasses.replace(api, token=token)
        except InvalidValue as exc:
            raise ConfigError(f"api.{exc.key}: {exc.problem}") from None
    return Config(**sections)


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, broker_secrets: bool = True
) -> Config:
    """Read and check a gateway.toml; every problem is a ConfigError naming file and key.

    ``broker_secrets``: as for :func:`parse_config`.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return parse_config(text, environ, broker_secrets=broker_secrets)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
