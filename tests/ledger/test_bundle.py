"""ledger.bundle: building and verifying proof bundles, and every way one can be wrong."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import (
    ChainBuilder,
    Disclosure,
    Envelope,
    SealedBlock,
    SignedHeader,
    SigningKey,
    build_bundle,
    dumps_bundle,
    log_proofs,
    verify_bundle,
)

KEY = SigningKey.from_seed(bytes(32))
BATCH = 6
BLOCKS = 9


def make_store() -> tuple[list[SealedBlock], list[list[Envelope]]]:
    builder = ChainBuilder("gw-test", KEY)
    blocks, batches = [], []
    for height in range(BLOCKS):
        size = BATCH - height % 3
        envelopes = [
            Envelope.create(
                f"sensors/dev-{i}/temperature",
                json.dumps({"seq": height * 10 + i, "celsius": 4.0 + i}).encode(),
                1_000 * height + i,
                bytes([height, i]) * 8,
            )
            for i in range(size)
        ]
        blocks.append(
            builder.seal(
                [e.leaf_hash() for e in envelopes],
                envelopes[0].received_ns,
                envelopes[-1].received_ns,
                1_000 * height + 999,
            )
        )
        batches.append(envelopes)
    return blocks, batches


BLOCKS_, BATCHES = make_store()


def signed(block: SealedBlock) -> SignedHeader:
    return SignedHeader(block.header_bytes, block.signature)


def bundle_for(picks: list[tuple[int, int]], head: int = BLOCKS - 1) -> dict[str, Any]:
    disclosures = [
        Disclosure(
            BATCHES[h][i].to_bytes(), signed(BLOCKS_[h]), i, BLOCKS_[h].tree.inclusion_proof(i)
        )
        for h, i in picks
    ]
    proofs = log_proofs([b.block_hash for b in BLOCKS_[:head]], {h for h, _ in picks if h < head})
    return build_bundle(signed(BLOCKS_[head]), disclosures, proofs)


def test_valid_bundle_verifies_and_reports_readings() -> None:
    bundle = bundle_for([(2, 1), (2, 3), (5, 0), (8, 2)])
    report = verify_bundle(dumps_bundle(bundle), KEY.public_key)
    assert report.valid, report.failure
    assert [(r.block.height, r.leaf_index) for r in report.readings] == [
        (2, 1),
        (2, 3),
        (5, 0),
        (8, 2),
    ]
    assert report.readings[0].envelope == BATCHES[2][1]
    assert report.head is not None
    assert report.head.height == BLOCKS - 1
    assert report.head_hash == BLOCKS_[-1].block_hash
    assert [b["height"] for b in bundle["blocks"]] == [2, 5]  # each block once, head apart


def test_trusted_head_pins_the_head() -> None:
    bundle = bundle_for([(1, 0)])
    assert verify_bundle(bundle, KEY.public_key, BLOCKS_[-1].block_hash).valid
    report = verify_bundle(bundle, KEY.public_key, BLOCKS_[-2].block_hash)
    assert report.failure is not None
    assert report.failure.name == "trusted-head"


def test_bundle_discloses_nothing_but_the_chosen_envelopes() -> None:
    bundle = bundle_for([(3, 2)])
    blobs = b"".join(base64.b64decode(text) for text in _strings(bundle) if text != "gw-test")
    for height, batch in enumerate(BATCHES):
        for index, envelope in enumerate(batch):
            disclosed = (height, index) == (3, 2)
            assert (envelope.payload in blobs) == disclosed
            assert (envelope.salt in blobs) == disclosed


def _strings(obj: Any) -> Any:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key not in ("format", "key_id"):
                yield from _strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _strings(value)
    elif isinstance(obj, str):
        yield obj


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def edit_envelope(b: dict[str, Any]) -> None:
    envelope = BATCHES[2][1]
    edited = Envelope.create(
        envelope.topic, b'{"celsius":3.9}', envelope.received_ns, envelope.salt
    )
    b["readings"][0]["envelope"] = b64(edited.to_bytes())


def swap_indexes(b: dict[str, Any]) -> None:
    first, second = b["readings"][:2]
    first["leaf_index"], second["leaf_index"] = second["leaf_index"], first["leaf_index"]


def truncate_chain(b: dict[str, Any]) -> None:
    # Present an older head than the block the reading is in.
    b["head"] = {
        "height": 1,
        "header": b64(BLOCKS_[1].header_bytes),
        "signature": b64(BLOCKS_[1].signature),
    }


def resize_batch(b: dict[str, Any]) -> None:
    b["readings"][0]["batch_size"] += 1


def short_log_proof(b: dict[str, Any]) -> None:
    b["blocks"][0]["log_proof"].pop()


def wrong_log_size(b: dict[str, Any]) -> None:
    b["blocks"][0]["log_size"] -= 1


def foreign_head_signature(b: dict[str, Any]) -> None:
    b["head"]["signature"] = b64(SigningKey.from_seed(b"\x02" * 32).sign(BLOCKS_[-1].header_bytes))


def drop_block(b: dict[str, Any]) -> None:
    b["blocks"].clear()


def unknown_version(b: dict[str, Any]) -> None:
    b["format"] = "anchorgate-proof/9"


def garbage_envelope(b: dict[str, Any]) -> None:
    b["readings"][0]["envelope"] = b64(b"\x93\x01\x02\x03")


def bad_base64(b: dict[str, Any]) -> None:
    b["readings"][0]["path"][0] = "***"


@pytest.mark.parametrize(
    ("mutate", "check", "words"),
    [
        pytest.param(edit_envelope, "leaf-inclusion", "not in block 2", id="edited-envelope"),
        pytest.param(swap_indexes, "leaf-index", "is leaf 1 of block 2, not leaf 3", id="swap"),
        pytest.param(drop_block, "missing-block", "does not contain", id="missing-block"),
        pytest.param(truncate_chain, "chain-truncated", "not below the head", id="truncated"),
        pytest.param(unknown_version, "version", "anchorgate-proof/9", id="unknown-version"),
        pytest.param(resize_batch, "size-mismatch", "signed leaf count", id="batch-size"),
        pytest.param(wrong_log_size, "size-mismatch", "signed head height", id="log-size"),
        pytest.param(short_log_proof, "block-in-chain", "must have", id="short-log-proof"),
        pytest.param(foreign_head_signature, "signature", "does not verify", id="head-signature"),
        pytest.param(garbage_envelope, "envelope", "expected 5 fields", id="garbage-envelope"),
        pytest.param(bad_base64, "format", "not base64", id="bad-base64"),
    ],
)
def test_each_tampering_fails_with_its_own_reason(mutate: Any, check: str, words: str) -> None:
    bundle = bundle_for([(2, 1), (2, 3), (7, 0)])
    mutate(bundle)
    report = verify_bundle(dumps_bundle(bundle), KEY.public_key)
    assert not report.valid
    assert report.failure is not None
    assert report.failure.name == check, report.failure
    assert words in report.failure.detail
    assert report.readings == []


def test_wrong_public_key_fails_with_its_own_reason() -> None:
    report = verify_bundle(bundle_for([(2, 1)]), SigningKey.from_seed(b"\x03" * 32).public_key)
    assert report.failure is not None
    assert report.failure.name == "key"
    assert "trusted key" in report.failure.detail


def test_bundle_size_grows_with_log_of_chain_length() -> None:
    sizes = {}
    for length in (2, 64, 4096):
        builder = ChainBuilder("gw-test", KEY)
        hashes = []
        block = None
        for height in range(length):
            block = builder.seal([bytes([height % 256]) * 32], height, height, height)
            hashes.append(block.block_hash)
        assert block is not None
        first = SignedHeader(b"", b"")
        builder2 = ChainBuilder("gw-test", KEY)
        sealed0 = builder2.seal([bytes(32)], 0, 0, 0)
        first = SignedHeader(sealed0.header_bytes, sealed0.signature)
        disclosure = Disclosure(b"", first, 0, ())
        bundle = build_bundle(signed(block), [disclosure], log_proofs(hashes[:-1], [0]))
        sizes[length] = len(dumps_bundle(bundle))
    # 64x more blocks adds six log hashes (about 60 bytes of JSON each), nothing more.
    assert sizes[4096] - sizes[64] <= 6 * 64
    assert sizes[64] - sizes[2] <= 6 * 64


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_mutations_never_raise(data: st.DataObject) -> None:
    bundle = bundle_for([(2, 1), (7, 0)])
    paths = list(_leaves(bundle))
    path = data.draw(st.sampled_from(paths))
    replacement = data.draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**70), 2**70),
            st.floats(),
            st.text(max_size=20),
            st.lists(st.integers(), max_size=3),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        )
    )
    mutated = copy.deepcopy(bundle)
    target: Any = mutated
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    report = verify_bundle(json.dumps(mutated), KEY.public_key)
    if report.valid:
        # Only fields the verifier recomputes anyway may change without failing.
        assert mutated == bundle


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    report = verify_bundle(raw, KEY.public_key)
    assert not report.valid


def _leaves(obj: Any, prefix: tuple[Any, ...] = ()) -> Any:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*prefix, key)
            yield from _leaves(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield (*prefix, index)
            yield from _leaves(value, (*prefix, index))


def bundle_extending(old: int, head: int = BLOCKS - 1) -> dict[str, Any]:
    from ledger import BlockLog

    bundle = bundle_for([(1, 0)], head)
    log = BlockLog(b.block_hash for b in BLOCKS_[:head])
    extension = log.extension(signed(BLOCKS_[old]))
    disclosures = [
        Disclosure(
            BATCHES[1][0].to_bytes(), signed(BLOCKS_[1]), 0, BLOCKS_[1].tree.inclusion_proof(0)
        )
    ]
    rebuilt = build_bundle(
        signed(BLOCKS_[head]), disclosures, {1: log.inclusion_proof(1)}, extends=extension
    )
    assert {k: v for k, v in rebuilt.items() if k != "extends"} == bundle
    return rebuilt


@pytest.mark.parametrize("old", range(BLOCKS - 1))
def test_head_extends_an_older_trusted_head(old: int) -> None:
    bundle = bundle_extending(old)
    report = verify_bundle(dumps_bundle(bundle), KEY.public_key, BLOCKS_[old].block_hash)
    assert report.valid, report.failure
    assert report.extends == BLOCKS_[old].block_hash
    # Without the extension the older trusted head cannot be matched.
    del bundle["extends"]
    report = verify_bundle(bundle, KEY.public_key, BLOCKS_[old].block_hash)
    assert report.failure is not None
    assert report.failure.name == "trusted-head"


def test_forged_extensions_fail() -> None:
    bundle = bundle_extending(3)
    forged = copy.deepcopy(bundle)
    forged["extends"]["consistency"][0] = b64(bytes(32))
    report = verify_bundle(forged, KEY.public_key, BLOCKS_[3].block_hash)
    assert report.failure is not None
    assert report.failure.name == "head-extension"
    # The extension must name the trusted head, not just any older head.
    report = verify_bundle(bundle, KEY.public_key, BLOCKS_[4].block_hash)
    assert report.failure is not None
    assert report.failure.name == "trusted-head"
    # An "older" head that is not older.
    newer = copy.deepcopy(bundle)
    newer["extends"].update(
        height=BLOCKS - 1,
        header=b64(BLOCKS_[-1].header_bytes),
        signature=b64(BLOCKS_[-1].signature),
    )
    report = verify_bundle(newer, KEY.public_key)
    assert report.failure is not None
    assert report.failure.name == "head-extension"


def test_json_quirks_are_refused() -> None:
    text = dumps_bundle(bundle_for([(2, 1)])).decode()
    duplicated = text.replace(
        '"format": "anchorgate-proof/1",', '"format": "anchorgate-proof/1", "format": "x",', 1
    )
    for raw, words in [
        (duplicated.encode(), "appears twice"),
        (text.encode("utf-16"), "not UTF-8"),
        (b"\xef\xbb\xbf" + text.encode(), "not JSON"),
        (text.encode() + b"garbage", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"format": "anchorgate-proof/1", "gateway_id": 1' + b"0" * 5000 + b"}", "not JSON"),
    ]:
        report = verify_bundle(raw, KEY.public_key)
        assert report.failure is not None
        assert report.failure.name == "format"
        assert words in report.failure.detail


def test_non_canonical_base64_is_refused() -> None:
    bundle = bundle_for([(2, 1)])
    signature = base64.b64decode(bundle["head"]["signature"])
    # 64 bytes end with one byte in a "xx==" group: set a padding bit that decoders drop.
    text = b64(signature)
    last = text[-3]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    bundle["head"]["signature"] = text[:-3] + alphabet[alphabet.index(last) | 1] + "=="
    assert base64.b64decode(bundle["head"]["signature"]) == signature
    report = verify_bundle(bundle, KEY.public_key)
    assert report.failure is not None
    assert "not canonical base64" in report.failure.detail


def test_envelope_outside_its_block_time_range_fails() -> None:
    builder = ChainBuilder("gw-test", KEY)
    inside = Envelope.create("sensors/a/temperature", b"{}", 500, bytes(16))
    block = builder.seal([inside.leaf_hash()], 600, 700, 800)  # the gateway lied about times
    bundle = build_bundle(signed(block), [Disclosure(inside.to_bytes(), signed(block), 0, ())], {})
    report = verify_bundle(bundle, KEY.public_key)
    assert report.failure is not None
    assert report.failure.name == "time-range"
