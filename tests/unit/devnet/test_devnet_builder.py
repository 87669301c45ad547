"""The block builder: header fields it chooses, the errors it raises, empty blocks."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from khipu.chain.block_files import count_rlp_blocks
from khipu.chain.progress import ImportProgress
from khipu.devnet.builder import BLOCK_TIME, FEE_RECIPIENT, DevChainBuilder, GenerationError
from khipu.devnet.generate import (
    GENERATOR_VERSION,
    generate_chain,
    read_manifest,
)
from khipu.devnet.genesis import dev_account, dev_genesis_json
from khipu.devnet.workload import PlannedTx, TxKind, Workload


def transfer(nonce: int, kind: TxKind = TxKind.DYNAMIC_FEE) -> PlannedTx:
    return PlannedTx(0, nonce, dev_account(1).address, 5, b"", 21_000, 10, True, kind)


def test_next_header_is_deterministic_and_post_merge() -> None:
    first = DevChainBuilder(dev_genesis_json(account_count=2)).next_header()
    again = DevChainBuilder(dev_genesis_json(account_count=2)).next_header()
    assert first == again
    assert first.block_number == 1 and first.timestamp == BLOCK_TIME
    assert first.difficulty == 0 and first.coinbase == FEE_RECIPIENT
    assert first.parent_beacon_block_root != b"\x00" * 32


def test_block_with_every_tx_kind_becomes_the_head() -> None:
    builder = DevChainBuilder(dev_genesis_json(account_count=2))
    template = builder.next_header()
    signed = [
        builder.sign(template, transfer(nonce, kind), dev_account(0))
        for nonce, kind in enumerate(TxKind)
    ]
    built = builder.build_block(template, signed, [])
    assert builder.head == built.block.header
    assert built.block.header.gas_used == 3 * 21_000
    assert len(built.receipts) == 3
    assert {tx.sender for tx in built.block.transactions} == {dev_account(0).address}


def test_too_much_gas_for_the_block_is_refused() -> None:
    builder = DevChainBuilder(dev_genesis_json(account_count=2))
    template = builder.next_header().copy(gas_limit=30_000)
    signed = [builder.sign(template, transfer(n), dev_account(0)) for n in range(2)]
    with pytest.raises(GenerationError, match="over the block gas limit") as raised:
        builder.build_block(template, signed, [])
    assert raised.value.number == 1


def test_bad_nonce_is_reported_with_the_block_number() -> None:
    builder = DevChainBuilder(dev_genesis_json(account_count=2))
    template = builder.next_header()
    signed = [builder.sign(template, transfer(7), dev_account(0))]
    with pytest.raises(GenerationError, match="#1: py-evm rejected"):
        builder.build_block(template, signed, [])


def test_empty_blocks_and_the_manifest(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    chain = generate_chain(
        tmp_path, 3, 0, "transfers", 7, progress=ImportProgress(3, io.StringIO(), label="generate")
    )
    assert chain.txs == 0 and chain.gas == 0
    assert count_rlp_blocks(chain.chain_path) == 3
    manifest = read_manifest(tmp_path)
    assert manifest is not None
    assert manifest["generator"] == GENERATOR_VERSION
    assert manifest["arguments"] == {
        "blocks": 3, "txsPerBlock": 0, "profile": "transfers", "seed": 7,
    }  # fmt: skip
    assert manifest["head"]["hash"] == "0x" + chain.head_hash.hex()
    chain.chain_path.unlink()
    assert read_manifest(tmp_path) is None


def test_a_receipt_against_the_books_stops_generation_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = Workload.plan_block

    def wrong_books(self: Workload) -> list[PlannedTx]:
        txs = planner(self)
        return [dataclasses.replace(txs[0], succeeds=False), *txs[1:]]

    monkeypatch.setattr(Workload, "plan_block", wrong_books)
    with pytest.raises(GenerationError, match="#1: transaction 0 succeeded unexpectedly"):
        generate_chain(
            tmp_path,
            2,
            3,
            "transfers",
            0,
            progress=ImportProgress(2, io.StringIO(), label="generate"),
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["genesis.json"]
