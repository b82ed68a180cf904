"""anchorgate's pure core: bytes in, bytes out; no I/O beyond key files, no asyncio.

The few things most callers need are exported here; the primitives stay reachable in
their modules (``ledger.merkle``, ``ledger.envelope``, ``ledger.header``,
``ledger.chain``, ``ledger.keys``, ``ledger.bundle``, ``ledger.bundle_json``,
``ledger.verify``, ``ledger.keyschedule``). docs/FORMAT.md is the normative
description of every byte format this package reads or writes.
"""

from ledger.bundle import (
    BUNDLE_FORMAT,
    BlockLog,
    Disclosure,
    HeadExtension,
    SignedHeader,
    build_bundle,
    dumps_bundle,
    log_proofs,
)
from ledger.bundle_json import Check
from ledger.chain import ChainBuilder, ChainHead, ChainVerifier, SealedBlock, verify_chain
from ledger.envelope import Envelope
from ledger.errors import (
    ChainError,
    ConsistencyError,
    FormatError,
    KeyFileError,
    LedgerError,
    ProofError,
    SignatureError,
)
from ledger.header import BlockHeader, block_hash
from ledger.keys import KeyId, PublicKey, SigningKey
from ledger.merkle import (
    LeafHash,
    MerkleTree,
    Root,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)
from ledger.verify import VerificationReport, VerifiedReading, verify_bundle

__all__ = [
    "BUNDLE_FORMAT",
    "BlockHeader",
    "BlockLog",
    "ChainBuilder",
    "ChainError",
    "ChainHead",
    "ChainVerifier",
    "Check",
    "ConsistencyError",
    "Disclosure",
    "Envelope",
    "FormatError",
    "HeadExtension",
    "KeyFileError",
    "KeyId",
    "LeafHash",
    "LedgerError",
    "MerkleTree",
    "ProofError",
    "PublicKey",
    "Root",
    "SealedBlock",
    "SignatureError",
    "SignedHeader",
    "SigningKey",
    "VerificationReport",
    "VerifiedReading",
    "block_hash",
    "build_bundle",
    "dumps_bundle",
    "hash_leaf",
    "log_proofs",
    "verify_bundle",
    "verify_chain",
    "verify_consistency",
    "verify_inclusion",
]
