"""File permission checks made at start-up, before the gateway trusts a file.

The store holds the chain the gateway continues and signs on top of: whoever can
replace or edit it can make the gateway extend a chain of their choosing. So the
store file and the directory it lives in (where DuckDB also writes its ``.wal``)
must belong to the user running the gateway (a directory may also belong to root)
and must not be writable by everyone. Private keys and secret files (tokens,
passwords) are checked where they are read (:meth:`ledger.SigningKey.load`,
:func:`gateway.config_load.read_secret_file`): group or others may not read them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import ConfigError


def _check(path: Path, what: str, key: str, uid: int, owners: tuple[int, ...]) -> None:
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in owners:
        raise ConfigError(
            f"{key}: the {what} {path} belongs to user id {info.st_uid}, not to the user "
            f"running the gateway ({uid}); another user could replace it. Run: "
            f"chown {uid} {path}"
        )
    if mode & stat.S_IWOTH:
        raise ConfigError(
            f"{key}: the {what} {path} is writable by everyone (mode {mode:04o}); "
            f"run: chmod o-w {path}, or keep the store in a directory of its own"
        )


def check_store_permissions(path: Path, uid: int | None = None) -> None:
    """Refuse a store file or directory that another user owns or anyone may write.

    The file need not exist yet (the gateway creates it); its directory must, or the
    check is left to the store's own error when it is created.
    """
    uid = os.getuid() if uid is None else uid
    path = Path(path)
    directory = path.resolve().parent
    if directory.exists():
        _check(directory, "store directory", "store.path", uid, (uid, 0))
    for file in (path, path.with_name(path.name + ".wal")):
        if file.exists():
            _check(file.resolve(), "store file", "store.path", uid, (uid,))
