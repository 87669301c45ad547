"""Whole chains from third-party suites: ethtest's 600 blocks and real mainnet era1 history."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from eth.db.chain import ChainDB
from eth_typing import Address

from khipu.chain.config import Genesis
from khipu.chain.era1_blocks import iter_era1_blocks
from khipu.chain.import_job import import_files
from khipu.chain.importer import BlockImporter
from khipu.chain.presets import genesis_json
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.storage.chain_store import ChainStore
from tests.chain_helpers import memory_chain
from tests.conftest import conformance_full, require_testdata

ERA1_SAMPLE_BLOCKS = 200  # default mode: the first blocks of epoch 0, uncles included


def test_ethtest_chain_reaches_headblock_and_headstate(tmp_path: Path) -> None:
    folder = require_testdata("ethtest")
    document = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    store = ChainStore.open(tmp_path, genesis, document)
    try:
        summary = import_files(store, rules, [folder / "chain.rlp"], check_seal=False)
        head_block = json.loads((folder / "headblock.json").read_text())
        assert "0x" + summary.head.hash.hex() == head_block["hash"]
        assert summary.head.block_number == int(head_block["number"], 16) == 600

        head_state = json.loads((folder / "headstate.json").read_text())
        assert summary.head.state_root.hex() == head_state["root"].removeprefix("0x")
        vm = open_vm(store, rules)
        for address_hex, account in head_state["accounts"].items():
            address = Address(bytes.fromhex(address_hex[2:]))
            assert vm.state.get_balance(address) == int(account["balance"]), address_hex
            assert vm.state.get_nonce(address) == account["nonce"], address_hex
            assert "0x" + vm.state.get_code_hash(address).hex() == account["codeHash"]
            for slot, value in account.get("storage", {}).items():
                stored = vm.state.get_storage(address, int(slot, 16))
                assert stored == int(value, 16), (address_hex, slot)
    finally:
        store.close()


def open_vm(store: ChainStore, rules: ChainRules):  # type: ignore[no-untyped-def]
    from khipu.chain.chain import open_chain

    chain = open_chain(rules, store.db)
    return chain.get_vm(store.head())


@pytest.fixture(scope="module")
def mainnet_document() -> dict[str, object]:
    return genesis_json("mainnet")


def test_mainnet_era1_blocks_with_seals_rewards_and_uncles(
    mainnet_document: dict[str, object], tmp_path: Path
) -> None:
    """Real PoW blocks: Ethash seals, block and uncle rewards, every state root checked."""
    files = sorted(require_testdata("mainnet", "era1").glob("*.era1"))
    assert len(files) == 2
    genesis = Genesis.from_json(mainnet_document)
    rules = ChainRules(genesis.config)
    if conformance_full():
        store = ChainStore.open(tmp_path, genesis, mainnet_document)
        try:
            progress = ImportProgress(None, interval=30)
            summary = import_files(store, rules, files, check_seal=True, progress=progress)
            assert summary.head.block_number == 16383
        finally:
            store.close()
        return
    chain, _ = memory_chain(mainnet_document)
    importer = BlockImporter(chain, check_seal=True)
    blocks = itertools.islice(iter_era1_blocks(files[0], rules), 1, ERA1_SAMPLE_BLOCKS + 1)
    uncles = 0
    for block in blocks:
        result = importer.import_block(block)
        assert not result.already_known
        uncles += len(block.uncles)
    head = ChainDB(chain.chaindb.db).get_canonical_head()
    assert head.block_number == ERA1_SAMPLE_BLOCKS
    assert uncles > 0, "the sample must include uncle rewards"


@pytest.mark.parametrize(("suite", "head_number"), [("rpc-compat-prague", 45), ("rpc-compat", 54)])
def test_rpc_compat_chain_imports_to_the_forkchoice_head(
    suite: str, head_number: int, tmp_path: Path
) -> None:
    """The hive rpc-compat chains: Frontier to Prague, and the current one through Osaka/BPO2."""
    folder = require_testdata(suite)
    document = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    store = ChainStore.open(tmp_path, genesis, document)
    try:
        summary = import_files(
            store, ChainRules(genesis.config), [folder / "chain.rlp"], check_seal=False
        )
    finally:
        store.close()
    fcu = json.loads((folder / "headfcu.json").read_text())
    assert "0x" + summary.head.hash.hex() == fcu["params"][0]["headBlockHash"]
    assert summary.head.block_number == head_number
