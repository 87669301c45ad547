"""Parallel and serial execution give bit-identical blocks: state root, receipts, bloom, gas.

Every block is executed in parallel on its parent state, then imported serially by the
`BlockImporter` (which checks every header field); the two headers must be equal field by field
and the parallel executor must not have fallen back to serial execution to get there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from khipu.chain.importer import BlockImporter, decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution.executor import BlockExecution, execute_block_parallel, supports_parallel
from tests.chain_helpers import memory_chain, read_blocks
from tests.conftest import conformance_full, require_testdata

PROFILES = ("transfers", "erc20", "amm", "mixed")
COMPARED = ("state_root", "receipt_root", "bloom", "gas_used", "requests_hash")
ETHTEST_BLOCKS = 120  # default sample; KHIPU_CONFORMANCE=full runs all 600


@dataclass
class Compared:
    executions: list[BlockExecution]
    parallel_blocks: int
    reexecuted: int
    transactions: int


def compare_chain(genesis_document: dict[str, Any], raws: list[bytes]) -> Compared:
    """Execute each block in parallel, then serially, and assert the results are equal."""
    chain, rules = memory_chain(genesis_document)
    importer = BlockImporter(chain, check_seal=False)
    executions = []
    for raw in raws:
        block = decode_block(raw, rules)
        execution = execute_block_parallel(chain, block, workers=2)
        importer.import_block(block)
        serial = chain.chaindb.get_block_header_by_hash(block.header.hash)
        for name in COMPARED:
            parallel_value = getattr(execution.block.header, name, None)
            assert parallel_value == getattr(serial, name, None), (block.number, name)
        assert execution.block.header.hash == serial.hash, block.number
        assert execution.mode != "serial-fallback", f"block #{block.number} fell back"
        vm_class = rules.vm_class_for_header(block.header)
        if supports_parallel(vm_class) and len(block.transactions) >= 2:
            assert execution.mode == "parallel", block.number
        executions.append(execution)
    parallel = [e for e in executions if e.mode == "parallel"]
    return Compared(
        executions,
        len(parallel),
        sum(e.reexecuted for e in parallel),
        sum(e.transactions for e in parallel),
    )


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parallel-chains")
    blocks = 8 if conformance_full() else 4
    for profile in PROFILES:
        generate_chain(root / profile, blocks, 40, profile, seed=7)
    return {profile: root / profile for profile in PROFILES}


@pytest.mark.parametrize("profile", PROFILES)
def test_generated_chain_parallel_equals_serial(chains: dict[str, Path], profile: str) -> None:
    folder = chains[profile]
    document = json.loads((folder / "genesis.json").read_text())
    compared = compare_chain(document, read_blocks(folder / "chain.rlp"))
    assert compared.parallel_blocks == len(compared.executions) > 0
    assert compared.transactions > 0
    if profile == "transfers":
        # independent transfers, one coinbase: the fee credits are deltas, nothing conflicts
        assert compared.reexecuted == 0
    if profile == "amm":
        # nearly every swap touches the same pool: most transactions are re-executed
        assert compared.reexecuted > compared.transactions // 2


def test_ethtest_chain_parallel_equals_serial() -> None:
    folder = require_testdata("ethtest")
    document = json.loads((folder / "genesis.json").read_text())
    raws = read_blocks(folder / "chain.rlp")
    if not conformance_full():
        raws = raws[:ETHTEST_BLOCKS]
    compared = compare_chain(document, raws)
    assert len(compared.executions) == len(raws)
