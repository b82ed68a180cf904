"""The ledger's exceptions, one tree for the whole package.

::

    LedgerError                 anything the ledger refuses
    ├── FormatError             bytes or JSON that are not a valid encoding of the format
    │                           (wrong type, missing or extra field, non-canonical,
    │                           unknown version)
    ├── ProofError              a well-formed proof that does not prove what it claims
    │   └── ConsistencyError    two tree heads that a consistency proof cannot join
    ├── SignatureError          a signature that does not verify, or an unknown key
    ├── ChainError              a broken link in a chain of block headers; carries the
    │                           height and a short reason code
    └── KeyFileError            a key file that cannot be read, is malformed, or is
                                readable by group or others

Primitives raise these; :func:`ledger.bundle.verify_bundle` collects them into a report
instead of raising, so that hostile input always ends in a readable verdict.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the ledger raises."""


class FormatError(LedgerError):
    """Input is not a valid encoding of the format it claims to be."""


class ProofError(LedgerError):
    """A Merkle proof does not prove inclusion of the leaf under the root."""


class ConsistencyError(ProofError):
    """A consistency proof does not show that the second tree extends the first."""


class SignatureError(LedgerError):
    """A signature does not verify under the key, or the key is not known."""


class ChainError(LedgerError):
    """A broken link in a chain of block headers.

    ``reason`` is a short stable code (``height-gap``, ``duplicate-height``,
    ``prev-hash``, ``log-root``, ``signature``, ``unknown-key``, ``revoked-key``,
    ``time-backwards``, ``gateway-id``, ``rotation``, ``format``); ``height`` is the
    height of the offending header.
    """

    def __init__(self, reason: str, height: int, message: str) -> None:
        super().__init__(f"block {height}: {message}")
        self.reason = reason
        self.height = height


class KeyFileError(LedgerError):
    """A key file cannot be used; the message names the file and the fix."""
