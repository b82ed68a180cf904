"""Shared material for the fuzz tests: seeds from the test vectors, mutations, budgets.

The seeds are the byte-exact encodings in tests/vectors/anchorgate/, so mutated
inputs start out valid and reach the checks past the first byte. ``FUZZ_EXAMPLES``
(an integer) scales every fuzz test for a long run, e.g.
``FUZZ_EXAMPLES=20000 pytest tests/security``; the default keeps the whole fuzz
suite to a few seconds of CI time.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "anchorgate"
DEFAULT_EXAMPLES = 200


def examples(share: float = 1.0) -> int:
    """This test's number of examples: ``share`` of FUZZ_EXAMPLES (or of the default)."""
    total = int(os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
    return max(10, int(total * share))


def fuzz_settings(share: float = 1.0, deadline_s: float = 1.0) -> settings:
    """Settings for one fuzz test: bounded examples, and a deadline that catches hangs.

    The deadline is generous (the machine running CI is shared) but far below what a
    quadratic blow-up or an unbounded allocation on a hostile length would take.
    """
    return settings(
        max_examples=examples(share),
        deadline=timedelta(seconds=deadline_s),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def envelope_seeds() -> list[bytes]:
    return [bytes.fromhex(case["envelope"]) for case in load("envelopes.json")["cases"]]


def _blocks() -> list[dict[str, Any]]:
    # Version 1 headers, and version 2 ones from the key rotation vectors.
    blocks: list[dict[str, Any]] = load("chain.json")["blocks"] + load("rotation.json")["blocks"]
    return blocks


def header_seeds() -> list[bytes]:
    return [bytes.fromhex(block["header"]) for block in _blocks()]


def head_seeds() -> list[bytes]:
    return [bytes.fromhex(block["head_after"]) for block in _blocks()]


def signed_reading_seeds() -> list[bytes]:
    return [bytes.fromhex(c["signed_reading"]) for c in load("device_signatures.json")["valid"]]


def payload_seeds() -> list[bytes]:
    return [bytes.fromhex(case["payload"]) for case in load("envelopes.json")["cases"]]


# Headers that claim a huge length or count: what a hostile encoder would send to make
# a decoder allocate before it has read the bytes.
HUGE_PREFIXES = [
    b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
    b"\xdd\xff\xff\xff\xff",  # array32 of 2^32-1 items
    b"\xdf\xff\xff\xff\xff",  # map32 of 2^32-1 pairs
    b"\xc9\xff\xff\xff\xff\x01",  # ext32
    b"\xdc\xff\xff",  # array16
    b"\xde\xff\xff",  # map16
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",  # uint64 max
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # int64 min
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # float64 NaN
    b"\xc3",  # true
    b"\xc0",  # nil
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with one to four mutations: flips, cuts, insertions, hostile prefixes."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "prefix", "delete", "dup"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            i = min(at, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "prefix":
            data[at:at] = draw(st.sampled_from(HUGE_PREFIXES))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
    return bytes(data)


def deep(opener: bytes, closer: bytes, depth: int) -> bytes:
    return opener * depth + closer * depth
