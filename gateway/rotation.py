"""``anchorgate rotate-key``: hand the gateway's chain to a new signing key.

The rotation is one block (docs/FORMAT.md section 5.3): a version 2 header with no
readings, signed by the current (old) key, that names the new public key; every later
block is signed by the new key, and an auditor who trusts only the original public
key follows the rotations to verify them (bundles carry them, section 8.2).

It works on a STOPPED gateway: the store is locked while the gateway runs, and the
running gateway keeps its key in memory, so a rotation under it would fork the chain.
:func:`rotate_key`:

1. loads the old key from ``gateway.key_file`` and checks that it is the chain's
   current key, and that the newest blocks verify (as the gateway's start-up does);
2. makes the new key and writes it, mode 0600, to a file that must not exist;
3. seals the rotation block and commits it with meta ``key_id`` (the new key) and, at
   the first rotation, ``original_public_key``, in one transaction (the key file is
   removed again if that fails);
4. points ``gateway.key_file`` in the configuration at the new key file, editing that
   one line (or adding it under ``[gateway]``), or says exactly what to change.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.anchor import block_row
from gateway.chain_check import check_recent_blocks
from gateway.config import Config
from gateway.config_load import load_config
from gateway.errors import ConfigError, GatewayError, StoreError
from gateway.keyring import ORIGINAL_KEY_META
from gateway.store import Store
from ledger import ChainBuilder, ChainHead, LedgerError, SealedBlock, SigningKey


class RotationError(GatewayError):
    """The key cannot be rotated; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What :func:`rotate_key` did."""

    height: int
    old_key_id: bytes
    new_key_id: bytes
    new_key_file: Path
    block_hash: bytes
    config_updated: bool
    config_note: str


def default_key_path(old: Path, new: SigningKey) -> Path:
    """``keys/gateway.key`` -> ``keys/gateway-<12 hex of the new key id>.key``."""
    return old.with_name(f"{old.stem}-{new.key_id.hex()[:12]}{old.suffix or '.key'}")


def rotate_key(
    config: Config,
    config_path: Path,
    new_key_path: Path | None = None,
    *,
    update_config: bool = True,
    clock: Callable[[], int] = time.time_ns,
) -> RotationResult:
    """Rotate the key of a stopped gateway; see the module docstring for the steps."""
    try:
        old = SigningKey.load(config.gateway.key_file)
    except LedgerError as exc:
        raise RotationError(f"gateway.key_file: {exc}") from None
    new = SigningKey.generate()
    path = (
        new_key_path if new_key_path is not None else default_key_path(config.gateway.key_file, new)
    )
    if path.exists():
        raise RotationError(
            f"{path} already exists; rotate-key never overwrites a key file (choose another "
            "--new-key)"
        )
    try:
        store = Store.open(
            config.store.path, memory_limit=config.store.memory_limit, threads=config.store.threads
        )
    except StoreError as exc:
        if "in use" in str(exc):
            raise RotationError(
                f"{exc}: stop the gateway first (rotate-key needs the store to itself)"
            ) from None
        raise
    try:
        sealed = _seal(store, config, old, new, clock)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new.save(path)
        except (OSError, LedgerError) as exc:
            raise RotationError(f"cannot write the new key: {exc}") from None
        meta = {"key_id": bytes(new.key_id)}
        if store.get_meta(ORIGINAL_KEY_META) is None:
            meta[ORIGINAL_KEY_META] = old.public_key.raw
        try:
            store.commit_batch([], block_row(sealed), [], meta=meta)
        except BaseException:
            path.unlink(missing_ok=True)  # nothing was committed: the key is unused
            raise
    finally:
        store.close()
    updated, note = (
        update_key_file(config_path, path)
        if update_config
        else (False, _instruction(config_path, path))
    )
    return RotationResult(
        height=sealed.header.height,
        old_key_id=old.key_id,
        new_key_id=new.key_id,
        new_key_file=path,
        block_hash=sealed.block_hash,
        config_updated=updated,
        config_note=note,
    )


def _seal(
    store: Store, config: Config, old: SigningKey, new: SigningKey, clock: Callable[[], int]
) -> SealedBlock:
    """Check the store as the gateway's start-up does, then seal the rotation block."""
    gateway_id = config.gateway.id
    stored_id = store.get_meta("gateway_id")
    if stored_id is not None and stored_id.decode(errors="replace") != gateway_id:
        raise RotationError(
            f"store: {store.path} belongs to gateway {stored_id.decode(errors='replace')!r}, "
            f"not {gateway_id!r} (gateway.id)"
        )
    check_recent_blocks(store, old, gateway_id, config.store.verify_blocks_on_start)
    store.claim(gateway_id, old.key_id)
    raw = store.chain_head()
    head = ChainHead.genesis() if raw is None else ChainHead.from_bytes(raw)
    return ChainBuilder(gateway_id, old, head).rotate(new, clock())


_SECTION = re.compile(r"^\s*\[\s*gateway\s*\]\s*(#.*)?$")
_ANY_SECTION = re.compile(r"^\s*\[")
_KEY_FILE = re.compile(r"""^(\s*key_file\s*=\s*)("(?:[^"\\]|\\.)*"|'[^']*')(.*)$""")


def _instruction(config_path: Path, key_path: Path) -> str:
    return (
        f"set key_file = {json.dumps(str(key_path))} in the [gateway] section of "
        f"{config_path} before starting the gateway"
    )


def update_key_file(config_path: Path, key_path: Path) -> tuple[bool, str]:
    """Point ``gateway.key_file`` at ``key_path`` in the TOML file, touching one line.

    Returns (updated, note). When the file's layout is not the simple one (one
    ``[gateway]`` table, at most one ``key_file`` line in it), nothing is written and
    the note says what to change by hand. The result is read back with the config
    loader; if it does not say ``key_path``, the original text is restored.
    """
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return False, f"cannot read {config_path} ({exc}); " + _instruction(config_path, key_path)
    lines = text.splitlines(keepends=True)
    sections = [i for i, line in enumerate(lines) if _SECTION.match(line)]
    if len(sections) != 1:
        return False, _instruction(config_path, key_path)
    start = sections[0] + 1
    end = next((i for i in range(start, len(lines)) if _ANY_SECTION.match(lines[i])), len(lines))
    value = json.dumps(str(key_path))
    found = [i for i in range(start, end) if lines[i].lstrip().startswith("key_file")]
    if len(found) > 1:
        return False, _instruction(config_path, key_path)
    if found:
        match = _KEY_FILE.match(lines[found[0]].rstrip("\r\n"))
        if match is None:
            return False, _instruction(config_path, key_path)
        ending = lines[found[0]][len(lines[found[0]].rstrip("\r\n")) :] or "\n"
        lines[found[0]] = f"{match.group(1)}{value}{match.group(3)}{ending}"
    else:
        lines.insert(start, f"key_file = {value}\n")
    if _write_back(config_path, "".join(lines), key_path):
        return True, f"gateway.key_file in {config_path} now names {key_path}"
    _write_back(config_path, text, None)
    return False, _instruction(config_path, key_path)


def _write_back(config_path: Path, text: str, expect: Path | None) -> bool:
    """Replace the file atomically (same mode); check that it now names ``expect``."""
    temporary = config_path.with_name(f".{config_path.name}.rotate-key")
    try:
        mode = config_path.stat().st_mode & 0o7777
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, config_path)
    except OSError:
        temporary.unlink(missing_ok=True)
        return False
    if expect is None:
        return True
    try:
        return load_config(config_path).gateway.key_file == expect
    except ConfigError:
        return False
