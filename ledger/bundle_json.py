"""Reading a proof bundle's JSON strictly (docs/FORMAT.md section 8): every flaw a check.

A bundle comes from whoever sends it to an auditor, so nothing in it is trusted: the
text must be UTF-8, at most :data:`MAX_BUNDLE_BYTES`, JSON with no member twice in
an object; each field must have its type, integers their range, bytes canonical
base64, hashes 32 bytes and at most :data:`MAX_PROOF_HASHES` of them. A flaw raises
:class:`CheckFailed` carrying the failed :class:`Check`; ``ledger.verify`` turns it
into the report's verdict.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.merkle import HASH_SIZE

MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_PROOF_HASHES = 64


@dataclass(frozen=True, slots=True)
class Check:
    """One check the verifier made. ``subject`` names the block or reading concerned."""

    name: str
    ok: bool
    subject: str
    detail: str


class CheckFailed(Exception):
    """Stops verification at the first failed check, which it carries."""

    def __init__(self, name: str, subject: str, detail: str) -> None:
        super().__init__(detail)
        self.check = Check(name, False, subject, detail)


def require(cond: bool, name: str, subject: str, detail: str) -> None:
    if not cond:
        raise CheckFailed(name, subject, detail)


def get(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if type(value) is not kind:
        raise CheckFailed("format", where, f"{where}: field {key!r} must be a {kind.__name__}")
    return value


def get_int(obj: Mapping[str, Any], key: str, where: str, maximum: int = 2**64 - 1) -> int:
    value: int = get(obj, key, int, where)
    require(0 <= value <= maximum, "format", where, f"{where}: field {key!r} is out of range")
    return value


def get_bytes(obj: Mapping[str, Any], key: str, where: str) -> bytes:
    text: str = get(obj, key, str, where)
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CheckFailed("format", where, f"{where}: field {key!r} is not base64") from None
    # One encoding per value: refuse stray bits in the padding (e.g. "QR==").
    require(
        base64.b64encode(data).decode() == text,
        "format",
        where,
        f"{where}: field {key!r} is not canonical base64",
    )
    return data


def get_list(obj: Mapping[str, Any], key: str, where: str, most: int, least: int = 0) -> list[Any]:
    """The list ``obj[key]``, of ``least`` to ``most`` items (a hostile bundle's are not)."""
    items: list[Any] = get(obj, key, list, where)
    count, field = len(items), f"{where}: field {key!r} has {len(items)}"
    require(count <= most, "format", where, f"{field}, more than {most}")
    require(count >= least, "format", where, f"{field}, fewer than {least}")
    return items


def get_hashes(obj: Mapping[str, Any], key: str, where: str) -> list[bytes]:
    items = get_list(obj, key, where, MAX_PROOF_HASHES)
    hashes = [get_bytes({key: item}, key, where) for item in items]
    require(
        all(len(h) == HASH_SIZE for h in hashes),
        "format",
        where,
        f"{where}: every hash in {key!r} must be {HASH_SIZE} bytes",
    )
    return hashes


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise CheckFailed("format", "bundle", f"member {key!r} appears twice in one object")
        result[key] = value
    return result


def parse_bundle(bundle: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(bundle, Mapping):
        return bundle
    require(
        len(bundle) <= MAX_BUNDLE_BYTES,
        "format",
        "bundle",
        f"bundle of {len(bundle)} {'characters' if isinstance(bundle, str) else 'bytes'} "
        f"is larger than {MAX_BUNDLE_BYTES}",
    )
    if isinstance(bundle, bytes):
        try:
            bundle = bundle.decode("utf-8")  # UTF-8 only: json.loads would guess UTF-16/32
        except UnicodeDecodeError as exc:
            raise CheckFailed(
                "format", "bundle", f"bundle is not UTF-8 (byte {exc.start})"
            ) from None
    try:
        parsed = json.loads(bundle, object_pairs_hook=unique_members)
    except (ValueError, RecursionError) as exc:
        raise CheckFailed("format", "bundle", f"bundle is not JSON: {exc}") from None
    require(isinstance(parsed, dict), "format", "bundle", "bundle is not a JSON object")
    result: Mapping[str, Any] = parsed
    return result
