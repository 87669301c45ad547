"""Generated dev chains: the importer accepts them, and they carry what each profile promises."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth.abc import BlockAPI
from eth.db.account import AccountDB
from eth_typing import Address

from khipu.chain.chain import open_chain
from khipu.chain.config import Genesis
from khipu.chain.import_job import ImportSummary, import_files
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.devnet import contracts
from khipu.devnet.builder import receipt_succeeded
from khipu.devnet.generate import GeneratedChain, generate_chain
from khipu.devnet.workload import pool_address
from khipu.storage.chain_store import ChainStore

BLOCKS, TXS = 5, 20


@dataclass
class Imported:
    generated: GeneratedChain
    summary: ImportSummary
    store: ChainStore
    rules: ChainRules

    def state(self, state_root: bytes) -> AccountDB:
        return AccountDB(self.store.db, state_root)

    def blocks(self) -> Iterator[BlockAPI]:
        chain = open_chain(self.rules, self.store.db)
        for number in range(1, self.generated.blocks + 1):
            yield chain.get_canonical_block_by_number(number)  # type: ignore[arg-type]


def quiet(blocks: int) -> ImportProgress:
    return ImportProgress(blocks, io.StringIO(), label="generate")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Imported]]:
    chains: dict[str, Imported] = {}
    for profile in ("transfers", "erc20", "amm", "mixed"):
        out = tmp_path_factory.mktemp(profile)
        generated = generate_chain(out / "chain", BLOCKS, TXS, profile, 1, progress=quiet(BLOCKS))
        document = json.loads(generated.genesis_path.read_text())
        genesis = Genesis.from_json(document)
        store = ChainStore.open(out / "datadir", genesis, document)
        rules = ChainRules(genesis.config)
        summary = import_files(
            store, rules, [generated.chain_path], check_seal=False,
            progress=ImportProgress(BLOCKS, io.StringIO()),
        )  # fmt: skip
        chains[profile] = Imported(generated, summary, store, rules)
    yield chains
    for chain in chains.values():
        chain.store.close()


@pytest.mark.parametrize("profile", ["transfers", "erc20", "amm", "mixed"])
def test_the_importer_accepts_every_block(imported: dict[str, Imported], profile: str) -> None:
    chain = imported[profile]
    assert chain.summary.blocks == BLOCKS
    assert chain.summary.txs == BLOCKS * TXS == chain.generated.txs
    assert chain.summary.gas == chain.generated.gas > BLOCKS * TXS * 21_000 - 1
    assert chain.summary.head.hash == chain.generated.head_hash
    assert chain.summary.head.state_root == chain.generated.head_state_root
    for block in chain.blocks():
        assert block.header.timestamp == 12 * block.number
        assert len(block.withdrawals) == 2  # type: ignore[attr-defined]


def test_erc20_balances_equal_the_books(imported: dict[str, Imported]) -> None:
    chain = imported["erc20"]
    state = chain.state(chain.summary.head.state_root)
    for token, balances in chain.generated.books.token_balances.items():
        holders = sorted(balances)[:5] + sorted(balances, key=balances.__getitem__)[-3:]
        for holder in holders:
            slot = contracts.balance_slot(holder)
            assert state.get_storage(Address(token), slot) == balances[holder]
        assert state.get_storage(Address(token), contracts.TOTAL_SUPPLY_SLOT) == sum(
            balances.values()
        )
    moved = [b for books in chain.generated.books.token_balances.values() for b in books.values()]
    assert len(set(moved)) > 1  # transfers happened


def test_amm_reserves_change_in_every_block(imported: dict[str, Imported]) -> None:
    chain = imported["amm"]
    hot = pool_address(0)
    previous = None
    for block in chain.blocks():
        state = chain.state(block.header.state_root)
        reserves = tuple(state.get_storage(Address(hot), slot) for slot in contracts.RESERVE_SLOTS)
        assert reserves != previous
        previous = reserves
        assert sum(1 for tx in block.transactions if tx.to == hot) >= 2  # conflicting swaps
    assert list(previous or ()) == chain.generated.books.pool_reserves[hot]


def test_mixed_has_reverts_logs_deployments_and_every_tx_type(
    imported: dict[str, Imported],
) -> None:
    chain = imported["mixed"]
    failed = logs = 0
    types = set()
    for block in chain.blocks():
        receipts = block.get_receipts(chain.store.chaindb)
        failed += sum(1 for receipt in receipts if not receipt_succeeded(receipt))
        logs += sum(len(receipt.logs) for receipt in receipts)
        types |= {getattr(tx, "type_id", None) or 0 for tx in block.transactions}
    assert failed == chain.generated.failed_txs > 0
    assert logs > 0
    assert types == {0, 1, 2}
    deployed = chain.generated.books.deployed
    assert deployed
    state = chain.state(chain.summary.head.state_root)
    for address in deployed:
        assert state.get_code(Address(address)) == contracts.token_code()


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    def files(name: str, seed: int) -> tuple[bytes, bytes]:
        chain = generate_chain(tmp_path / name, 3, 8, "mixed", seed, progress=quiet(3))
        return chain.genesis_path.read_bytes(), chain.chain_path.read_bytes()

    first = files("a", 9)
    assert files("b", 9) == first
    other = files("c", 10)
    assert other[1] != first[1]


def test_progress_reports_rates() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = ImportProgress(10, stream, interval=1.0, clock=lambda: now[0], label="generate")
    now[0] = 2.0
    progress.advance(1, txs=50, gas=1_000_000)
    line = stream.getvalue()
    assert "progress=1/10" in line and "blocks_per_s=0.5" in line and "tx_per_s=25.0" in line
