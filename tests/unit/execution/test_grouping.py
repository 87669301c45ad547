"""Speculation shares predicted from the block alone: access keys, groups, gas-balanced shares."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khipu.execution.grouping import (
    access_keys,
    address_words,
    assign_shares,
    group_by_keys,
    speculation_shares,
)

A, B, C, D = (bytes([0x10 + i]) * 20 for i in range(4))
TOKEN, POOL = b"\x70" * 20, b"\x90" * 20
TRANSFER = bytes.fromhex("a9059cbb")


def word(address: bytes) -> bytes:
    return bytes(12) + address


def token_transfer(to: bytes, amount: int) -> bytes:
    return TRANSFER + word(to) + amount.to_bytes(32, "big")


@dataclass
class Tx:
    """What grouping reads of a py-evm transaction."""

    sender: bytes
    to: bytes
    data: bytes = b""
    gas: int = 21_000


def test_address_words_skip_the_selector_amounts_and_short_tails() -> None:
    assert address_words(token_transfer(B, 10**24)) == [B]
    small = (5).to_bytes(32, "big")  # 12 zero bytes, but no address
    assert address_words(TRANSFER + small + word(C)[:31]) == []
    assert address_words(word(B)) == []  # no selector: the word starts at byte 0


def test_access_keys_of_each_kind_of_transaction() -> None:
    assert access_keys(A, B, b"") == [("account", A), ("account", B)]
    assert access_keys(A, b"", b"\x60\x00") == [("account", A)]  # a creation
    assert access_keys(A, TOKEN, token_transfer(B, 1)) == [
        ("account", A), ("contract", TOKEN, A), ("contract", TOKEN, B),
    ]  # fmt: skip
    swap = access_keys(A, POOL, b"\x12\x34\x56\x78" + (10).to_bytes(32, "big"))
    assert ("contract", POOL) in swap  # no address in the calldata: the whole contract
    assert ("contract", TOKEN) in access_keys(A, TOKEN, token_transfer(B, 1), hot={TOKEN})


def test_groups_join_transactions_through_shared_keys_transitively() -> None:
    keys = [["a", "x"], ["b"], ["x", "y"], ["c"], ["y"], ["b"]]
    assert group_by_keys(keys) == [(0, 2, 4), (1, 5), (3,)]


def test_token_transfers_chain_a_recipient_to_its_later_send() -> None:
    txs = [
        Tx(A, TOKEN, token_transfer(B, 5)),  # A pays B
        Tx(C, TOKEN, token_transfer(D, 5)),  # unrelated
        Tx(B, TOKEN, token_transfer(C, 1)),  # B spends: joins A's and (through C) C's
        Tx(D, POOL, b"\x00" * 36),  # a swap: only D's own transactions
        Tx(A, B, gas=30_000),  # value to B: joins B's account
    ]
    groups = group_by_keys([access_keys(tx.sender, tx.to, tx.data) for tx in txs])
    assert groups == [(0, 1, 2, 4), (3,)]


def test_shares_balance_gas_heaviest_group_first() -> None:
    groups = [(0,), (1, 2), (3,), (4,)]
    weights = [50, 30, 30, 40, 10]
    # (1, 2) weighs 60: alone; then 50 and 40 + 10
    assert assign_shares(groups, weights, 3) == [(0,), (1, 2), (3, 4)]
    assert assign_shares(groups, weights, 1) == [(0, 1, 2, 3, 4)]
    assert assign_shares(groups, weights, 9) == [(0,), (1, 2), (3,), (4,)]
    with pytest.raises(ValueError):
        assign_shares(groups, weights, 0)


@given(
    keys=st.lists(st.lists(st.integers(0, 12), max_size=3), max_size=30),
    shares=st.integers(1, 5),
)
def test_shares_cover_every_transaction_once_and_keep_groups_together(
    keys: list[list[int]], shares: int
) -> None:
    groups = group_by_keys(keys)
    plan = assign_shares(groups, [1 + i % 4 for i in range(len(keys))], shares)
    assert sorted(i for share in plan for i in share) == list(range(len(keys)))
    assert len(plan) <= shares
    assert all(list(share) == sorted(share) for share in plan)
    share_of = {i: number for number, share in enumerate(plan) for i in share}
    for first, second in ((a, b) for a in range(len(keys)) for b in range(a)):
        if set(keys[first]) & set(keys[second]):
            assert share_of[first] == share_of[second]


def test_speculation_shares_of_transactions() -> None:
    txs = [Tx(A, B), Tx(C, D), Tx(B, A), Tx(D, TOKEN, token_transfer(A, 1), gas=60_000)]
    # A's token balance is the token's storage, not A's account: two groups
    assert speculation_shares(txs, 2) == [(0, 2), (1, 3)]
    assert speculation_shares([*txs, Tx(A, D)], 2) == [(0, 1, 2, 3, 4)]  # value from A to D
    assert speculation_shares([Tx(A, B), Tx(C, D, gas=30_000)], 2) == [(0,), (1,)]
