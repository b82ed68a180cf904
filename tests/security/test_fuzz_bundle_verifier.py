"""Fuzzing the bundle verifier: verify_bundle returns a report for any input, never raises.

Inputs: random bytes, random JSON, the vector bundle with its text mutated byte by
byte, and the vector bundle with one member replaced, removed or its signed bytes
altered. A bundle whose signed content was altered must never verify.
"""

from __future__ import annotations

import base64
import copy
import json
import tracemalloc
from typing import Any

import pytest
from fuzz_inputs import fuzz_settings, load, mutated
from hypothesis import given
from hypothesis import strategies as st

from ledger.bundle_json import MAX_BUNDLE_BYTES, MAX_PROOF_HASHES
from ledger.keys import PublicKey
from ledger.verify import MAX_BLOCKS, VerificationReport, verify_bundle

CASE = load("bundle.json")
KEY = PublicKey.from_pem(CASE["public_key_pem"].encode())
HEAD = bytes.fromhex(CASE["head_hash"])
TEXT: str = CASE["bundle_json"]
BUNDLE: dict[str, Any] = json.loads(TEXT)
SIGNED = ("header", "signature", "envelope")
PROVEN = [r.envelope for r in verify_bundle(TEXT, KEY, HEAD).readings]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def check(bundle: bytes | str | dict[str, Any], trusted: bytes | None = HEAD) -> VerificationReport:
    report = verify_bundle(bundle, KEY, trusted)  # any exception fails the test
    assert isinstance(report, VerificationReport)
    assert report.valid == (report.failure is None and bool(report.checks))
    if not report.valid:
        assert report.failure is not None
        assert report.failure.detail
        assert not report.readings
    return report


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member and item of a JSON value, as a path of keys and indexes."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            found.append((*prefix, key))
            found.extend(paths(child, (*prefix, key)))
    return found


ALL_PATHS = paths(BUNDLE)
SIGNED_PATHS = [p for p in ALL_PATHS if p[-1] in SIGNED]


def at(bundle: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    parent = bundle
    for key in path[:-1]:
        parent = parent[key]
    return parent, path[-1]


def test_the_vector_bundle_verifies() -> None:
    assert check(TEXT).valid


@fuzz_settings(share=0.3)
@given(data=st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    assert not check(data).valid


@fuzz_settings(share=0.3)
@given(value=json_values)
def test_random_json(value: Any) -> None:
    assert not check(json.dumps(value)).valid


@fuzz_settings(share=0.5, deadline_s=3.0)
@given(data=st.data())
def test_mutated_text(data: st.DataObject) -> None:
    text = data.draw(mutated([TEXT.encode()]))
    report = check(text)
    if report.valid:
        # Whitespace, unknown members, fewer readings: fine; nothing new may be proven.
        assert report.head_hash == HEAD
        assert all(r.envelope in PROVEN for r in report.readings)


@fuzz_settings(share=0.5, deadline_s=3.0)
@given(
    path=st.sampled_from(ALL_PATHS),
    action=st.sampled_from(["replace", "delete"]),
    value=json_values,
)
def test_mutated_members(path: tuple[Any, ...], action: str, value: Any) -> None:
    bundle = copy.deepcopy(BUNDLE)
    parent, key = at(bundle, path)
    if action == "delete":
        del parent[key]
    else:
        parent[key] = value
    check(bundle)
    report = check(json.dumps(bundle))
    if report.valid:
        assert report.head_hash == HEAD
        assert all(r.envelope in PROVEN for r in report.readings)


@fuzz_settings(share=0.5, deadline_s=3.0)
@given(path=st.sampled_from(SIGNED_PATHS), data=st.data())
def test_altered_signed_bytes_never_verify(path: tuple[Any, ...], data: st.DataObject) -> None:
    bundle = copy.deepcopy(BUNDLE)
    parent, key = at(bundle, path)
    original = base64.b64decode(parent[key])
    altered = data.draw(mutated([original]).filter(lambda b: b != original))
    parent[key] = base64.b64encode(altered).decode()
    assert not check(bundle).valid
    assert not check(bundle, trusted=None).valid


def test_a_bundle_over_the_size_limit_is_refused_unread() -> None:
    huge = b" " * (MAX_BUNDLE_BYTES + 1)
    report = check(huge)
    assert report.failure is not None
    assert report.failure.name == "format"
    assert "larger than" in report.failure.detail


@pytest.mark.parametrize("member", ["blocks", "readings"])
def test_proofs_longer_than_64_hashes_are_refused(member: str) -> None:
    bundle = copy.deepcopy(BUNDLE)
    entry = bundle[member][0]
    name = "log_proof" if member == "blocks" else "path"
    entry[name] = [base64.b64encode(bytes(32)).decode()] * (MAX_PROOF_HASHES + 1)
    report = check(bundle)
    assert report.failure is not None
    assert report.failure.name == "format"
    assert f"more than {MAX_PROOF_HASHES}" in report.failure.detail


def test_too_many_blocks_are_refused_before_any_is_checked() -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["blocks"] = [None] * (MAX_BLOCKS + 1)
    tracemalloc.start()
    try:
        report = check(bundle)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.failure is not None
    assert f"more than {MAX_BLOCKS}" in report.failure.detail
    assert peak < 1 << 20


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 100_000 + "]" * 100_000, id="deep-array"),
        pytest.param('{"a":' * 50_000 + "1" + "}" * 50_000, id="deep-object"),
        pytest.param('{"format": ' + "9" * 5000 + "}", id="huge-integer"),
        pytest.param('{"format": 1e999999}', id="huge-float"),
        pytest.param('{"a": "\\ud800"}', id="lone-surrogate"),
        pytest.param('{"a": 1, "a": 2}', id="duplicate-member"),
        pytest.param("\ufeff{}", id="byte-order-mark"),
    ],
)
def test_hostile_json_is_a_format_failure(text: str) -> None:
    report = check(text.encode("utf-8", "surrogatepass"))
    assert report.failure is not None
    assert report.failure.name in ("format", "version")


ROTATION = load("rotation.json")
ROTATION_KEY = PublicKey.from_pem(ROTATION["public_key_pem"].encode())
ROTATION_TEXTS = [b["bundle_json"].encode() for b in ROTATION["bundles"]]


@fuzz_settings(share=0.3, deadline_s=3.0)
@given(data=st.data())
def test_mutated_key_rotation_bundles(data: st.DataObject) -> None:
    # anchorgate-proof/2 bundles carry the chain of keys: their decoding is fuzzed too.
    text = data.draw(mutated(ROTATION_TEXTS))
    report = verify_bundle(text, ROTATION_KEY)
    assert isinstance(report, VerificationReport)
    if not report.valid:
        assert report.failure is not None
        assert not report.readings
