"""Canonical msgpack: the one byte encoding the ledger hashes and signs.

Every ledger record is a msgpack *array* of fixed length (field order is the
format, so no map key order can vary). Canonical means: each value in its shortest
msgpack form (the form ``msgpack.packb(..., use_bin_type=True)`` produces), text as
``str`` with valid UTF-8, bytes as ``bin``, integers as ``int`` (never float, never
bool), and nothing after the array. :func:`unpack_array` decodes strictly and then
re-encodes: input that is not byte-for-byte the canonical encoding of what it decodes
to is refused, so one value has exactly one encoding and one hash.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ledger.errors import FormatError

# Bounds for the decoder, so that hostile input cannot make it allocate much.
MAX_RECORD_BYTES = 1 << 20


def pack(fields: list[Any]) -> bytes:
    """The canonical encoding of a record's fields."""
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def unpack_array(data: bytes, what: str, length: int) -> list[Any]:
    """Decode a canonical msgpack array of exactly ``length`` items, or raise FormatError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_RECORD_BYTES:
        raise FormatError(f"{what}: {len(data)} bytes is more than {MAX_RECORD_BYTES}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_array_len=64,
            max_map_len=64,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData) as exc:
        raise FormatError(f"{what}: not a msgpack value ({exc})") from None
    if not isinstance(value, list):
        raise FormatError(f"{what}: expected a msgpack array, got {type(value).__name__}")
    if len(value) != length:
        raise FormatError(f"{what}: expected {length} fields, got {len(value)}")
    if pack(value) != data:
        raise FormatError(f"{what}: not the canonical msgpack encoding")
    return value


def field_int(value: Any, what: str, name: str, minimum: int = 0, maximum: int = 2**64 - 1) -> int:
    """An integer field (bool is refused) within [minimum, maximum]."""
    if type(value) is not int:
        raise FormatError(f"{what}: field {name} must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise FormatError(f"{what}: field {name} = {value} is outside {minimum}..{maximum}")
    return value


def field_bytes(value: Any, what: str, name: str, size: int | None = None) -> bytes:
    """A bin field, of exactly ``size`` bytes when given."""
    if type(value) is not bytes:
        raise FormatError(f"{what}: field {name} must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise FormatError(f"{what}: field {name} must be {size} bytes, got {len(value)}")
    return value


def field_str(value: Any, what: str, name: str, max_bytes: int) -> str:
    """A non-empty str field of at most ``max_bytes`` UTF-8 bytes."""
    if type(value) is not str:
        raise FormatError(f"{what}: field {name} must be a string, got {type(value).__name__}")
    size = len(value.encode())
    if not 0 < size <= max_bytes:
        raise FormatError(f"{what}: field {name} must be 1..{max_bytes} bytes of UTF-8, is {size}")
    return value
