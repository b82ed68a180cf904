"""Fuzzing the ledger's byte decoders: envelope, header, chain head, signed reading, msgpack.

Property: for any bytes, ``from_bytes`` either returns a value whose ``to_bytes`` is
exactly the input (one value, one encoding) or raises a ``LedgerError``; nothing else
escapes, every call is quick, and a hostile length prefix allocates nothing like the
length it claims.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from fuzz_inputs import (
    HUGE_PREFIXES,
    deep,
    envelope_seeds,
    fuzz_settings,
    head_seeds,
    header_seeds,
    mutated,
    signed_reading_seeds,
)
from hypothesis import given
from hypothesis import strategies as st

from ledger.canonical import MAX_RECORD_BYTES, unpack_array
from ledger.chain import ChainHead
from ledger.device_sig import SignedReading
from ledger.envelope import Envelope
from ledger.errors import FormatError, LedgerError
from ledger.header import BlockHeader

Codec = Callable[[bytes], Any]
CODECS: dict[str, tuple[Codec, list[bytes]]] = {
    "envelope": (Envelope.from_bytes, envelope_seeds()),
    "header": (BlockHeader.from_bytes, header_seeds()),
    "chain-head": (ChainHead.from_bytes, head_seeds()),
    "signed-reading": (SignedReading.from_bytes, signed_reading_seeds()),
}
# A hostile prefix must not cost more than this much memory, whatever it claims.
MEMORY_BOUND = 2 * MAX_RECORD_BYTES


def decode_or_refuse(codec: Codec, data: bytes) -> None:
    """Decode; a success must re-encode to the very same bytes."""
    try:
        value = codec(data)
    except LedgerError:
        return
    assert value.to_bytes() == data


@pytest.mark.parametrize("name", sorted(CODECS))
def test_seeds_decode(name: str) -> None:
    codec, seeds = CODECS[name]
    for seed in seeds:
        assert codec(seed).to_bytes() == seed


@pytest.mark.parametrize("name", sorted(CODECS))
@fuzz_settings(share=0.5)
@given(data=st.binary(max_size=512))
def test_random_bytes_only_raise_ledger_errors(name: str, data: bytes) -> None:
    decode_or_refuse(CODECS[name][0], data)


@pytest.mark.parametrize("name", sorted(CODECS))
@fuzz_settings(share=1.0)
@given(data=st.data())
def test_mutated_encodings_only_raise_ledger_errors(name: str, data: st.DataObject) -> None:
    codec, seeds = CODECS[name]
    decode_or_refuse(codec, data.draw(mutated(seeds)))


@fuzz_settings(share=0.5)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text(max_size=40)
        | st.binary(max_size=40),
        lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=30,
    ),
    length=st.integers(0, 12),
)
def test_unpack_array_any_msgpack_value(value: object, length: int) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    try:
        fields = unpack_array(data, "record", length)
    except FormatError:
        return
    assert isinstance(fields, list)
    assert len(fields) == length
    assert msgpack.packb(fields, use_bin_type=True) == data


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("prefix", HUGE_PREFIXES, ids=lambda p: p[:1].hex())
def test_huge_length_prefix_allocates_little(name: str, prefix: bytes) -> None:
    codec, seeds = CODECS[name]
    seed = seeds[0]
    # As the whole record, as the first field, and replacing a field in the middle.
    candidates = [prefix, seed[:1] + prefix + seed[1:], seed[:20] + prefix + seed[20:]]
    for data in candidates:
        tracemalloc.start()
        try:
            with pytest.raises(FormatError):
                codec(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"{prefix.hex()}: {peak} bytes traced"


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(deep(b"\x91", b"", 100_000), id="array-nesting"),
        pytest.param(deep(b"\x81\xa1k", b"\xc0", 50_000), id="map-nesting"),
        pytest.param(b"\x95" + b"\xdc\x00\x40" + b"\x00" * 64 * 4, id="wide-fields"),
        pytest.param(b"\xc6" + (MAX_RECORD_BYTES + 1).to_bytes(4, "big"), id="over-max-record"),
        pytest.param(bytes(MAX_RECORD_BYTES + 1), id="record-too-long"),
    ],
)
def test_hostile_shapes_are_format_errors(name: str, data: bytes) -> None:
    with pytest.raises(FormatError):
        CODECS[name][0](data)


def test_not_bytes_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="expected bytes"):
        Envelope.from_bytes("95")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "version",
    [pytest.param([1], id="array"), pytest.param(2**40, id="uint64"), pytest.param("1", id="str")],
)
def test_a_header_version_that_is_no_fixint_is_refused(version: object) -> None:
    # Found by the fuzzer: the version was peeked from the second byte only, and an
    # element that was not a fixint there was never checked.
    fields = msgpack.unpackb(header_seeds()[0])
    fields[0] = version
    with pytest.raises(FormatError, match="version"):
        BlockHeader.from_bytes(msgpack.packb(fields, use_bin_type=True))
