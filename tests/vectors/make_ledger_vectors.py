"""Generate tests/vectors/anchorgate/*.json: anchorgate's own format test vectors.

Everything is derived from fixed seeds, salts and times, and Ed25519 signatures are
deterministic, so running this again must reproduce the committed files byte for
byte (tests/vectors/test_ledger_vectors.py checks that). Run it only when a format
changes on purpose, together with a version bump and docs/FORMAT.md:

    .venv/bin/python tests/vectors/make_ledger_vectors.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger import (
    BlockLog,
    ChainBuilder,
    Disclosure,
    Envelope,
    SealedBlock,
    SignedHeader,
    SigningKey,
    build_bundle,
    dumps_bundle,
)
from ledger.merkle import hash_leaf

OUT = Path(__file__).resolve().parent / "anchorgate"
SEED = bytes(range(32))
ROTATION_SEEDS = [bytes(range(32 * i, 32 * i + 32)) for i in (1, 2, 3)]
GATEWAY_ID = "gw-vectors-01"
BASE_NS = 1_764_000_000_000_000_000


def key() -> SigningKey:
    return SigningKey.from_seed(SEED)


def envelopes_for(height: int, count: int) -> list[Envelope]:
    out = []
    for i in range(count):
        device = f"dev-{i:02d}"
        payload = json.dumps(
            {
                "device_id": device,
                "seq": height * 100 + i,
                "ts": 1_764_000_000_000 + i,
                "celsius": round(3.5 + 0.25 * i, 2),
            },
            separators=(",", ":"),
        ).encode()
        out.append(
            Envelope.create(
                f"sensors/{device}/temperature",
                payload,
                BASE_NS + height * 1_000_000_000 + i * 1_000,
                bytes([height * 16 + i]) * 16,
            )
        )
    return out


def envelope_vectors() -> dict[str, Any]:
    cases = []
    for envelope in [
        *envelopes_for(0, 3),
        Envelope.create("t", b"", 0, bytes(16)),
        Envelope.create("sensors/ünïcode/location", b"\x82\xa3lat\xcb@J", 2**64 - 1, b"\xff" * 16),
    ]:
        data = envelope.to_bytes()
        cases.append(
            {
                "version": envelope.version,
                "salt": envelope.salt.hex(),
                "topic": envelope.topic,
                "received_ns": envelope.received_ns,
                "payload": envelope.payload.hex(),
                "envelope": data.hex(),
                "leaf_hash": hash_leaf(data).hex(),
            }
        )
    return {"description": "Leaf envelopes: fields, canonical bytes, leaf hash", "cases": cases}


def chain_vectors() -> tuple[dict[str, Any], dict[str, Any]]:
    signer = key()
    builder = ChainBuilder(GATEWAY_ID, signer)
    sizes = [3, 1, 5, 2]
    blocks, batches = [], []
    for height, size in enumerate(sizes):
        batch = envelopes_for(height, size)
        sealed = builder.seal(
            [e.leaf_hash() for e in batch],
            batch[0].received_ns,
            batch[-1].received_ns,
            BASE_NS + height * 1_000_000_000 + 500_000_000,
        )
        blocks.append(sealed)
        batches.append(batch)
    chain = {
        "description": "A chain of 4 blocks signed with the key from seed; headers, "
        "hashes, signatures, batch trees and the chain head after each block",
        "key": {
            "seed": SEED.hex(),
            "public_key": signer.public_key.raw.hex(),
            "public_key_pem": signer.public_key.to_pem().decode(),
            "key_id": signer.key_id.hex(),
        },
        "blocks": [
            {
                "height": b.header.height,
                "gateway_id": b.header.gateway_id,
                "prev_hash": b.header.prev_hash.hex(),
                "log_root": b.header.log_root.hex(),
                "batch_root": b.header.batch_root.hex(),
                "leaf_count": b.header.leaf_count,
                "first_received_ns": b.header.first_received_ns,
                "last_received_ns": b.header.last_received_ns,
                "created_ns": b.header.created_ns,
                "key_id": b.header.key_id.hex(),
                "header": b.header_bytes.hex(),
                "block_hash": b.block_hash.hex(),
                "signature": b.signature.hex(),
                "leaf_hashes": [e.leaf_hash().hex() for e in batch],
                "inclusion_paths": [
                    [p.hex() for p in b.tree.inclusion_proof(i)] for i in range(len(batch))
                ],
                "head_after": b.head_after.to_bytes().hex(),
            }
            for b, batch in zip(blocks, batches, strict=True)
        ],
    }
    head = blocks[-1]
    picks = [(0, 2), (2, 4), (3, 1)]
    disclosures = [
        Disclosure(
            batches[h][i].to_bytes(),
            SignedHeader(blocks[h].header_bytes, blocks[h].signature),
            i,
            blocks[h].tree.inclusion_proof(i),
        )
        for h, i in picks
    ]
    log = BlockLog(b.block_hash for b in blocks[:-1])
    proofs = {h: log.inclusion_proof(h) for h, _ in picks if h < 3}
    extends = log.extension(SignedHeader(blocks[1].header_bytes, blocks[1].signature))
    bundle = build_bundle(
        SignedHeader(head.header_bytes, head.signature), disclosures, proofs, extends
    )
    bundle_case = {
        "description": "A proof bundle for readings (block 0, leaf 2), (block 2, leaf 4) and "
        "(block 3, leaf 1) under head 3, with proof that head 3 extends block 1 (the "
        "older trusted head); it verifies with chain.json's key and either head hash",
        "public_key_pem": signer.public_key.to_pem().decode(),
        "head_hash": head.block_hash.hex(),
        "older_head_hash": blocks[1].block_hash.hex(),
        "bundle_json": dumps_bundle(bundle).decode(),
    }
    return chain, bundle_case


def _block_vector(b: SealedBlock, batch: list[Envelope]) -> dict[str, Any]:
    header = b.header
    return {
        "height": header.height,
        "version": header.version,
        "key_id": header.key_id.hex(),
        "new_key": None if header.new_key is None else header.new_key.hex(),
        "leaf_count": header.leaf_count,
        "header": b.header_bytes.hex(),
        "block_hash": b.block_hash.hex(),
        "signature": b.signature.hex(),
        "leaf_hashes": [e.leaf_hash().hex() for e in batch],
        "head_after": b.head_after.to_bytes().hex(),
    }


def rotation_vectors() -> dict[str, Any]:
    """A chain that rotates its key twice, and bundles across the rotations."""
    keys = [key(), SigningKey.from_seed(ROTATION_SEEDS[0]), SigningKey.from_seed(ROTATION_SEEDS[1])]
    stranger = SigningKey.from_seed(ROTATION_SEEDS[2])
    builder = ChainBuilder(GATEWAY_ID, keys[0])
    blocks: list[SealedBlock] = []
    batches: list[list[Envelope]] = []
    for height, step in enumerate([2, 1, "r", 3, "r", 2]):
        created = BASE_NS + height * 1_000_000_000 + 500_000_000
        if step == "r":
            blocks.append(builder.rotate(keys[len(blocks) // 2], created))
            batches.append([])
            continue
        assert isinstance(step, int)
        batch = envelopes_for(height, step)
        blocks.append(
            builder.seal(
                [e.leaf_hash() for e in batch], batch[0].received_ns, batch[-1].received_ns, created
            )
        )
        batches.append(batch)

    def bundle_json(chain: list[SealedBlock], picks: list[tuple[int, int]]) -> str:
        head = chain[-1]
        log = BlockLog(b.block_hash for b in chain[:-1])
        rotations = [signed(b) for b in chain[:-1] if b.header.is_rotation]
        disclosures = [
            Disclosure(
                batches[h][i].to_bytes(), signed(chain[h]), i, chain[h].tree.inclusion_proof(i)
            )
            for h, i in picks
        ]
        heights = {r.header.height for r in rotations} | {h for h, _ in picks if h < len(chain) - 1}
        proofs = {h: log.inclusion_proof(h) for h in heights}
        extends = log.extension(signed(chain[3]))
        bundle = build_bundle(signed(head), disclosures, proofs, extends, rotations)
        return dumps_bundle(bundle).decode()

    def forged(signer: SigningKey) -> list[SealedBlock]:
        batch = envelopes_for(6, 1)
        late = ChainBuilder(GATEWAY_ID, signer, blocks[-1].head_after)
        batches.append(batch)
        sealed = late.seal([batch[0].leaf_hash()], batch[0].received_ns, batch[0].received_ns, 0)
        return [*blocks, sealed]

    valid = bundle_json(blocks, [(0, 1), (5, 0)])
    revoked = bundle_json(forged(keys[1]), [(0, 1), (6, 0)])
    batches.pop()
    unknown = bundle_json(forged(stranger), [(0, 1), (6, 0)])
    no_rotations = json.loads(valid)
    no_rotations["rotations"] = []
    return {
        "description": "A chain of 6 blocks whose key rotates twice (rotation blocks at "
        "heights 2 and 4: key 0 -> key 1 -> key 2), and bundles under head 5 (or a forged "
        "head 6) that verify, or fail with the named check, under key 0 (chain.json's key) "
        "alone",
        "keys": [
            {"seed": (SEED if i == 0 else ROTATION_SEEDS[i - 1]).hex(), "key_id": k.key_id.hex()}
            for i, k in enumerate(keys)
        ],
        "public_key_pem": keys[0].public_key.to_pem().decode(),
        "blocks": [_block_vector(b, batch) for b, batch in zip(blocks, batches, strict=False)],
        "bundles": [
            {"name": "valid", "expect": None, "bundle_json": valid},
            {"name": "old key after rotation", "expect": "revoked-key", "bundle_json": revoked},
            {"name": "key no rotation introduced", "expect": "unknown-key", "bundle_json": unknown},
            {
                "name": "rotations left out",
                "expect": "unknown-key",
                "bundle_json": dumps_bundle(no_rotations).decode(),
            },
        ],
    }


def signed(block: SealedBlock) -> SignedHeader:
    return SignedHeader(block.header_bytes, block.signature)


def build_all() -> dict[str, str]:
    """File name -> exact file text."""
    chain, bundle = chain_vectors()
    files = {
        "envelopes.json": envelope_vectors(),
        "chain.json": chain,
        "bundle.json": bundle,
        "rotation.json": rotation_vectors(),
    }
    return {
        name: json.dumps(data, indent=1, ensure_ascii=False) + "\n" for name, data in files.items()
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in build_all().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
