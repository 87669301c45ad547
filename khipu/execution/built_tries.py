"""The transaction trie the merge built, reused by py-evm's `validate_block`.

py-evm's `import_block` builds the transaction trie twice: in
`set_block_transactions_and_withdrawals` and again in `validate_block`, which compares its root
with the header's; its own first build fills an lru cache that the second one hits. The
merging VM builds its tries with trie_batch (one pass, several times faster), so py-evm's cache
stays cold and `validate_block` paid a whole HexaryTrie build per block (~16 ms for 100
transactions here).

`reusing_transaction_trie(transactions, root, nodes)` makes py-evm's trie function return the
merge's `(root, nodes)` for exactly those transaction objects (the same objects, in the same
order: same encodings, so the same trie) while the `with` block runs in this thread or task;
any other call (another thread, other items, py-evm's serial path) computes as py-evm does.
The check itself is not skipped: the root it compares was built from these transactions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

import eth.vm.base
from eth.db.trie import make_trie_root_and_nodes as pyevm_make_trie_root_and_nodes

_BUILT: ContextVar[tuple[Sequence[Any], bytes, dict[bytes, bytes]] | None] = ContextVar(
    "khipu_built_transaction_trie", default=None
)


def make_trie_root_and_nodes(items: Sequence[Any]) -> tuple[bytes, dict[bytes, bytes]]:
    """py-evm's `make_trie_root_and_nodes`, or the trie built for these very items if the
    caller runs inside `reusing_transaction_trie` for them."""
    built = _BUILT.get()
    if built is not None:
        transactions, root, nodes = built
        if len(items) == len(transactions) and all(
            item is known for item, known in zip(items, transactions, strict=True)
        ):
            return root, dict(nodes)
    root, computed = pyevm_make_trie_root_and_nodes(items)
    return root, cast(dict[bytes, bytes], computed)


@contextmanager
def reusing_transaction_trie(
    transactions: Sequence[Any], root: bytes, nodes: dict[bytes, bytes]
) -> Iterator[None]:
    """Inside, py-evm's VM gets `(root, nodes)` as the trie of `transactions` (see above)."""
    token = _BUILT.set((tuple(transactions), root, nodes))
    try:
        yield
    finally:
        _BUILT.reset(token)


# eth.vm.base imported the function by name: its module global is what validate_block calls.
eth.vm.base.make_trie_root_and_nodes = make_trie_root_and_nodes  # type: ignore[assignment]
