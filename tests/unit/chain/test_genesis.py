"""Genesis blocks computed as geth computes them."""

from __future__ import annotations

import json

import pytest
import rlp

from khipu.chain.config import Genesis
from khipu.chain.genesis import genesis_header, genesis_state_root
from khipu.chain.presets import genesis_json
from khipu.chain.rules import ChainRules
from tests.chain_helpers import read_blocks
from tests.conftest import require_testdata

MAINNET_GENESIS_HASH = "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
MAINNET_STATE_ROOT = "d7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544"


def test_mainnet_preset_builds_the_mainnet_genesis() -> None:
    genesis = Genesis.from_json(genesis_json("mainnet"))
    header = genesis_header(genesis, ChainRules(genesis.config))
    assert header.state_root.hex() == MAINNET_STATE_ROOT
    assert header.hash.hex() == MAINNET_GENESIS_HASH
    assert len(genesis.alloc) == 8893


@pytest.mark.parametrize("suite", ["ethtest", "rpc-compat-prague", "rpc-compat"])
def test_genesis_hash_is_the_parent_of_block_one(suite: str) -> None:
    folder = require_testdata(suite)
    genesis = Genesis.load(folder / "genesis.json")
    header = genesis_header(genesis, ChainRules(genesis.config))
    first_block_parent = rlp.decode(read_blocks(folder / "chain.rlp")[0])[0][0]
    assert header.hash == first_block_parent


def test_prague_genesis_fills_later_fork_fields() -> None:
    genesis = Genesis.from_json(genesis_json("dev"))
    header = genesis_header(genesis, ChainRules(genesis.config))
    assert header.base_fee_per_gas == 1_000_000_000
    assert header.blob_gas_used == 0 and header.excess_blob_gas == 0
    assert header.parent_beacon_block_root == b"\x00" * 32
    assert header.requests_hash.hex().startswith("e3b0c442")  # sha256 of nothing


def test_alloc_storage_and_code_change_the_state_root() -> None:
    document = genesis_json("dev")
    base = genesis_state_root(Genesis.from_json(document))
    with_storage = json.loads(json.dumps(document))
    with_storage["alloc"]["0x" + "11" * 20] = {"balance": "0x1", "storage": {"0x1": "0x2"}}
    with_code = json.loads(json.dumps(document))
    with_code["alloc"]["0x" + "11" * 20] = {"balance": "0x1", "code": "0x00"}
    roots = {
        base,
        genesis_state_root(Genesis.from_json(with_storage)),
        genesis_state_root(Genesis.from_json(with_code)),
    }
    assert len(roots) == 3
