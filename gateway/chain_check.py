"""The start-up check of a store's chain: the newest blocks against the keys and leaves.

Before the gateway continues a chain it checks, with :func:`check_recent_blocks`,
that the chain head in ``meta`` follows from the newest ``store.verify_blocks_on_start``
blocks, that each of them is signed by the key of its time (gateway.keyring) and that
its stored readings hash to its batch root; and that the configured key is the chain's
current key. A store that fails is refused with a message naming the first bad block.
"""

from __future__ import annotations

from gateway.errors import StoreMismatchError
from gateway.keyring import check_current, store_history
from gateway.schema import BlockRow
from gateway.store import Store
from ledger import ChainError, ChainHead, ChainVerifier, SigningKey
from ledger import FormatError as LedgerFormatError
from ledger.merkle import MerkleTree, hash_leaf


def check_recent_blocks(
    store: Store,
    key: SigningKey,
    gateway_id: str,
    count: int,
    setting: str = "gateway.key_file",
) -> int:
    """Verify the newest ``count`` blocks against the keys, the chain head and their leaves.

    ``key`` must be the chain's current key (``setting`` names where it came from).
    Returns the number of blocks checked; raises StoreMismatchError naming the first
    bad block.
    """
    raw_head = store.chain_head()
    total = store.count_blocks()
    if raw_head is None:
        if total:
            raise StoreMismatchError(f"store: {total} blocks but no chain head in meta")
        return 0
    try:
        head = ChainHead.from_bytes(raw_head)
    except LedgerFormatError as exc:
        raise StoreMismatchError(f"store: the chain head in meta is unreadable: {exc}") from None
    if head.height != total:
        raise StoreMismatchError(
            f"store: the chain head says {head.height} blocks, the blocks table has {total}"
        )
    first = max(0, head.height - count)
    start = ChainHead.genesis()
    if first > 0:
        before = store.blocks(first - 1, first)
        start = _head_of(before[0]) if before else start
    history = store_history(store.query, store.get_meta, key.public_key)
    stored_key = store.get_meta("key_id")
    if not history.rotations and stored_key is not None and stored_key != key.key_id:
        raise StoreMismatchError(
            f"{setting} holds key {key.key_id.hex()[:16]}, but the chain's current key is "
            f"{stored_key.hex()[:16]}"
        )
    keys, revoked = history.verifier_keys(first)
    verifier = ChainVerifier(keys, gateway_id, start, revoked)
    blocks = store.blocks(first, head.height)
    for block in blocks:
        where = f"store: block {block.height}"
        try:
            header = verifier.feed(block.header, block.signature)
        except ChainError as exc:
            raise StoreMismatchError(f"{where} does not verify ({exc.reason}): {exc}") from None
        leaves = store.block_leaves(block.height)
        if len(leaves) != header.leaf_count:
            raise StoreMismatchError(
                f"{where}: {len(leaves)} stored readings, the header says {header.leaf_count}"
            )
        for index, (envelope, leaf) in enumerate(leaves):
            if hash_leaf(envelope) != leaf:
                raise StoreMismatchError(f"{where}: reading {index} does not match its leaf hash")
        if MerkleTree(leaf for _, leaf in leaves).root != header.batch_root:
            raise StoreMismatchError(f"{where}: its readings do not hash to the batch root")
    if verifier.head.to_bytes() != head.to_bytes():
        raise StoreMismatchError("store: the chain head in meta does not follow from the blocks")
    check_current(history, key.public_key, setting)
    return len(blocks)


def _head_of(block: BlockRow) -> ChainHead:
    try:
        return ChainHead.from_bytes(block.head_after)
    except LedgerFormatError as exc:
        raise StoreMismatchError(f"store: block {block.height}: unreadable head: {exc}") from None
