"""Checkpoints: each committed block's signed header, published for witnesses.

After every block commits, the gateway publishes its header and signature (QoS 1,
retained) on ``gateway.checkpoint_topic``, ``anchorgate/checkpoints/{gateway_id}`` by
default. Anyone allowed to subscribe (an auditor's logger, a second site, another
gateway) can keep them: a checkpoint is a head seen at a known time, outside the box.
An auditor later passes its block hash to ``anchorgate export --since-head`` and
``anchorgate verify --head``: the bundle must then prove that today's chain extends
that head, so a gateway (or a thief of its key) that rewrote history after the
checkpoint is caught. docs/FORMAT.md section 11 specifies the message.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ledger import BlockHeader, PublicKey, block_hash
from ledger.errors import FormatError

CHECKPOINT_FORMAT = "anchorgate-checkpoint/1"
_MEMBERS = {
    "format",
    "gateway_id",
    "height",
    "block_hash",
    "key_id",
    "created_ns",
    "header",
    "signature",
}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One block's signed header, as published."""

    header: bytes
    signature: bytes

    @property
    def block_hash(self) -> bytes:
        return block_hash(self.header)

    def to_json(self) -> bytes:
        """The message: JSON with the header fields a reader wants and the signed bytes."""
        header = BlockHeader.from_bytes(self.header)
        document = {
            "format": CHECKPOINT_FORMAT,
            "gateway_id": header.gateway_id,
            "height": header.height,
            "block_hash": self.block_hash.hex(),
            "key_id": header.key_id.hex(),
            "created_ns": header.created_ns,
            "header": base64.b64encode(self.header).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        """Parse a message; FormatError naming the member if it is not one."""
        try:
            document: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError(f"checkpoint: not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise FormatError("checkpoint: not a JSON object")
        if document.get("format") != CHECKPOINT_FORMAT:
            raise FormatError(f"checkpoint: format is not {CHECKPOINT_FORMAT!r}")
        if set(document) != _MEMBERS:
            odd = ", ".join(sorted(set(document) ^ _MEMBERS))
            raise FormatError(f"checkpoint: missing or unknown members: {odd}")
        signed = {}
        for name in ("header", "signature"):
            value = document.get(name)
            if not isinstance(value, str):
                raise FormatError(f"checkpoint: {name}: missing or not a string")
            try:
                signed[name] = base64.b64decode(value, validate=True)
            except ValueError:
                raise FormatError(f"checkpoint: {name}: not base64") from None
        checkpoint = cls(signed["header"], signed["signature"])
        header = BlockHeader.from_bytes(checkpoint.header)
        # The readable members must say what the signed bytes say.
        claims = {
            "gateway_id": header.gateway_id,
            "height": header.height,
            "block_hash": checkpoint.block_hash.hex(),
            "key_id": header.key_id.hex(),
            "created_ns": header.created_ns,
        }
        for name, value in claims.items():
            if document.get(name) != value:
                raise FormatError(f"checkpoint: {name} does not match the signed header")
        return checkpoint

    def verify(self, key: PublicKey) -> BlockHeader:
        """The header, once its signature verifies under ``key`` (raises SignatureError)."""
        header = BlockHeader.from_bytes(self.header)
        key.verify(self.signature, self.header)
        return header
