"""Workload planning: distinct senders, consistent nonces and books, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from khipu.devnet import commands, contracts
from khipu.devnet.workload import (
    POOL_RESERVE,
    PROFILES,
    TRANSFER_GAS,
    PlannedTx,
    TxKind,
    Workload,
    created_address,
    token_address,
)


def plan(workload: Workload, blocks: int) -> list[list[PlannedTx]]:
    return [workload.plan_block() for _ in range(blocks)]


def test_transfers_have_distinct_senders_and_untouched_recipients() -> None:
    workload = Workload("transfers", 40, seed=7)
    for block in plan(workload, 5):
        senders = [workload.addresses[tx.sender] for tx in block]
        recipients = [tx.to for tx in block]
        assert len(block) == 40
        assert len(set(senders)) == 40
        assert len(set(recipients)) == 40
        assert not set(senders) & set(recipients)
        assert all(tx.gas == TRANSFER_GAS and tx.value > 0 and tx.data == b"" for tx in block)


def test_nonces_count_up_per_sender() -> None:
    workload = Workload("mixed", 30, seed=3)
    seen: Counter[int] = Counter()
    for block in plan(workload, 6):
        for tx in block:
            assert tx.nonce == seen[tx.sender]
            seen[tx.sender] += 1
    assert workload.nonces == [seen[index] for index in range(len(workload.accounts))]


def test_erc20_books_conserve_each_token_supply() -> None:
    workload = Workload("erc20", 25, seed=11)
    supplies = {t: sum(b.values()) for t, b in workload.books.token_balances.items()}
    blocks = plan(workload, 4)
    assert {t: sum(b.values()) for t, b in workload.books.token_balances.items()} == supplies
    assert all(tx.to in supplies and tx.data[:4] == contracts.TRANSFER.to_bytes(4, "big")
               for block in blocks for tx in block)  # fmt: skip
    used = Counter(tx.to for block in blocks for tx in block)
    assert used.most_common(1)[0][0] == token_address(0)  # the hot token


def test_amm_swaps_hit_few_pools_and_keep_the_product() -> None:
    workload = Workload("amm", 30, seed=5)
    blocks = plan(workload, 3)
    pools = {tx.to for block in blocks for tx in block}
    assert len(pools) <= 3
    for reserve0, reserve1 in workload.books.pool_reserves.values():
        assert reserve0 * reserve1 >= POOL_RESERVE * POOL_RESERVE
    assert all(tx.succeeds for block in blocks for tx in block)


def test_mixed_has_every_kind() -> None:
    workload = Workload("mixed", 100, seed=1)
    txs = [tx for block in plan(workload, 3) for tx in block]
    assert any(not tx.succeeds for tx in txs)
    assert any(tx.to == b"" for tx in txs)
    assert {tx.kind for tx in txs} == set(TxKind)
    assert any(tx.value > 0 and not tx.data for tx in txs)
    deployments = [tx for tx in txs if tx.to == b""]
    expected = [created_address(workload.addresses[tx.sender], tx.nonce) for tx in deployments]
    assert workload.books.deployed == expected


def test_same_seed_same_plan_and_other_seed_differs() -> None:
    first = plan(Workload("mixed", 20, seed=42), 3)
    assert plan(Workload("mixed", 20, seed=42), 3) == first
    assert plan(Workload("mixed", 20, seed=43), 3) != first


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Workload("nft", 10, seed=0)


def test_the_command_line_offers_every_profile() -> None:
    assert commands.PROFILE_NAMES == PROFILES
