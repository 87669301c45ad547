"""Which transactions of a block should be speculated together, predicted from the block alone.

Speculation runs each share of a block's transactions as a chain, in block order on one state,
so a transaction that depends on an earlier one of its share sees that one's writes and (as long
as nothing else changed what it read) commits as it ran. This module chooses the shares: it
joins transactions that are likely to touch the same state into groups (union-find over
predicted access keys) and spreads the groups over the shares by gas (longest first, onto the
least loaded share).

The prediction needs no execution; it only has to be good, never exact (the merge validates
every value read):

- every transaction: its sender's account (nonce and balance);
- a plain value transfer (no data): the recipient's account;
- a call: the callee's storage of the sender, and of every calldata word that looks like an
  address (a token's balances[to]); a call with no such word (a swap on a pool) or a call to a
  `hot` contract is joined with every other such call of that contract.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Hashable, Iterable, Sequence
from typing import Any

# 4 bytes of function selector, then 32-byte words
SELECTOR_SIZE = 4
WORD_SIZE = 32
ADDRESS_PADDING = bytes(12)


def address_words(data: bytes) -> list[bytes]:
    """The calldata words (after the 4-byte selector) that look like an address: 12 zero bytes,
    then 20 bytes whose first four are not all zero (so that small amounts do not pass)."""
    words = []
    for start in range(SELECTOR_SIZE, len(data) - WORD_SIZE + 1, WORD_SIZE):
        word = data[start : start + WORD_SIZE]
        if word[:12] == ADDRESS_PADDING and any(word[12:16]):
            words.append(word[12:])
    return words


def access_keys(
    sender: bytes, to: bytes, data: bytes, hot: Collection[bytes] = ()
) -> list[Hashable]:
    """The predicted access keys of one transaction (see the module docstring); `to` is empty
    for a contract creation."""
    keys: list[Hashable] = [("account", sender)]
    if not to:
        return keys
    if not data:
        keys.append(("account", to))
        return keys
    words = address_words(data)
    if not words or to in hot:
        keys.append(("contract", to))
    keys.append(("contract", to, sender))
    keys.extend(("contract", to, word) for word in words)
    return keys


def transaction_keys(transaction: Any, hot: Collection[bytes] = ()) -> list[Hashable]:
    """`access_keys` of a py-evm transaction (recovers its sender, which py-evm caches). A
    transaction whose sender cannot be recovered gets a key of its own: the merge rejects it."""
    try:
        sender = bytes(transaction.sender)
    except Exception:  # whatever the signature check raises, the merge raises it too
        return [("unrecoverable", id(transaction))]
    return access_keys(sender, bytes(transaction.to), bytes(transaction.data), hot)


def group_by_keys(keys_of: Sequence[Iterable[Hashable]]) -> list[tuple[int, ...]]:
    """Transaction indices joined into groups, two transactions in one group if they share a
    key (transitively); each group in block order, groups ordered by their first index."""
    parent = list(range(len(keys_of)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    owner: dict[Hashable, int] = {}
    for index, keys in enumerate(keys_of):
        for key in keys:
            other = owner.setdefault(key, index)
            if other != index:
                a, b = root(index), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for index in range(len(keys_of)):
        groups.setdefault(root(index), []).append(index)
    return [tuple(group) for group in groups.values()]


def assign_shares(
    groups: Sequence[tuple[int, ...]], weights: Sequence[int], shares: int
) -> list[tuple[int, ...]]:
    """Spread `groups` over at most `shares` shares, heaviest group first onto the least loaded
    share (weights: per transaction index, e.g. its gas limit). Each share lists its indices in
    block order; empty shares are left out; shares come ordered by their first index.

    Raises ValueError if `shares` < 1.
    """
    if shares < 1:
        raise ValueError(f"shares must be >= 1, not {shares}")
    loads = [(0, share) for share in range(min(shares, len(groups)))]
    members: list[list[int]] = [[] for _ in loads]
    ordered = sorted(groups, key=lambda group: (-sum(weights[i] for i in group), group[0]))
    for group in ordered:
        load, share = heapq.heappop(loads)
        members[share].extend(group)
        heapq.heappush(loads, (load + sum(weights[i] for i in group), share))
    result = [tuple(sorted(share)) for share in members if share]
    return sorted(result, key=lambda share: share[0])


def speculation_shares(
    transactions: Sequence[Any], shares: int, hot: Collection[bytes] = ()
) -> list[tuple[int, ...]]:
    """The block's transaction indices split into at most `shares` shares to speculate each as
    a chain: likely dependent transactions together, the shares balanced by gas limit."""
    groups = group_by_keys([transaction_keys(tx, hot) for tx in transactions])
    return assign_shares(groups, [int(tx.gas) for tx in transactions], shares)
