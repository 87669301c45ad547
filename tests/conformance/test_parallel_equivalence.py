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
import rlp

from khipu.chain.importer import BlockImporter, decode_block
from khipu.devnet.builder import DevChainBuilder
from khipu.devnet.generate import generate_chain
from khipu.devnet.genesis import dev_accounts, dev_genesis_json
from khipu.devnet.workload import PlannedTx, PlannedWithdrawal
from khipu.execution.executor import (
    BlockExecution,
    execute_block_batched,
    execute_block_parallel,
    supports_parallel,
)
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


def compare_chain(
    genesis_document: dict[str, Any], raws: list[bytes], min_transactions: int = 2
) -> Compared:
    """Execute each block in parallel, batched (execute_block_batched), then serially, and
    assert the results are equal.

    Blocks of at least `min_transactions` transactions (of a fork supports_parallel covers) must
    have been executed in parallel, not serially.
    """
    chain, rules = memory_chain(genesis_document)
    importer = BlockImporter(chain, check_seal=False)
    executions = []
    for raw in raws:
        block = decode_block(raw, rules)
        execution = execute_block_parallel(
            chain, block, workers=2, min_transactions=min_transactions
        )
        batched = execute_block_batched(chain, block)
        importer.import_block(block)
        serial = chain.chaindb.get_block_header_by_hash(block.header.hash)
        for name in COMPARED:
            parallel_value = getattr(execution.block.header, name, None)
            assert parallel_value == getattr(serial, name, None), (block.number, name)
        assert execution.block.header.hash == serial.hash, block.number
        assert execution.mode != "serial-fallback", f"block #{block.number} fell back"
        assert batched.block.header == serial, f"block #{block.number}: batched differs"
        vm_class = rules.vm_class_for_header(block.header)
        if supports_parallel(vm_class):
            assert batched.mode == "batched", block.number
        if supports_parallel(vm_class) and len(block.transactions) >= min_transactions:
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
        # nearly every swap touches the same pool, but the swaps of one pool (no address in
        # their calldata) are speculated as one chain: they commit as they ran
        assert compared.reexecuted < compared.transactions // 10


def test_ethtest_chain_parallel_equals_serial() -> None:
    folder = require_testdata("ethtest")
    document = json.loads((folder / "genesis.json").read_text())
    raws = read_blocks(folder / "chain.rlp")
    if not conformance_full():
        raws = raws[:ETHTEST_BLOCKS]
    # Blocks of one transaction go through speculation and merge too: every kind of transaction
    # ethtest has must leave a complete write set (else the state root would differ).
    compared = compare_chain(document, raws, min_transactions=1)
    assert len(compared.executions) == len(raws)
    assert compared.parallel_blocks > len(raws) // 2


# Blocks built to hit the merge's hard cases. Each mixes transactions whose speculative run is
# wrong (a second transaction of a sender, a SELFDESTRUCT of an account another transaction also
# drains, a read of the coinbase's balance, a CALL to an address an earlier transaction created)
# with transactions that commute (plain value credits to one recipient, fee credits to the
# coinbase), plus a contract created and destroyed in one transaction and block constants
# (COINBASE, TIMESTAMP, BLOCKHASH) stored.

ETH = 10**18
GWEI = 10**9
SENDERS = 8
DRAINED = bytes.fromhex("5d" * 20)  # SELFDESTRUCTs to BENEFICIARY (Cancun: no deletion)
READER = bytes.fromhex("4d" * 20)  # stores BALANCE(COINBASE), TIMESTAMP, BLOCKHASH(n-1)
FORWARDER = bytes.fromhex("f0" * 20)  # CALLs the address in its calldata with CALLVALUE
BENEFICIARY = bytes.fromhex("be" * 20)  # does not exist at genesis
FRESH = bytes.fromhex("0f" * 20)  # does not exist at genesis

DRAIN_CODE = bytes.fromhex("73") + BENEFICIARY + bytes.fromhex("ff")
READ_CODE = bytes.fromhex("41 31 6000 55 42 6001 55 6001 43 03 40 6002 55 00")
FORWARD_CODE = bytes.fromhex("6000 6000 6000 6000 34 6000 35 6060 1c 5a f1 00")
# init code: SSTORE(0, 1), then SELFDESTRUCT to BENEFICIARY: created and deleted in one transaction
CREATE_AND_DESTROY = bytes.fromhex("6001600055") + DRAIN_CODE


def genesis() -> dict[str, Any]:
    extra: dict[str, dict[str, Any]] = {
        "0x" + DRAINED.hex(): {"balance": hex(3 * ETH), "code": "0x" + DRAIN_CODE.hex(),
                               "storage": {"0x0": "0x5"}},
        "0x" + READER.hex(): {"balance": "0x0", "code": "0x" + READ_CODE.hex()},
        "0x" + FORWARDER.hex(): {"balance": "0x0", "code": "0x" + FORWARD_CODE.hex()},
    }  # fmt: skip
    return dev_genesis_json(account_count=SENDERS, extra_alloc=extra)


def block_plan(nonces: list[int], block: int) -> list[PlannedTx]:
    def tx(sender: int, to: bytes, gas: int, value: int = 0, data: bytes = b"") -> PlannedTx:
        nonce = nonces[sender]
        nonces[sender] += 1
        tip = (sender + 1) * GWEI + block
        return PlannedTx(sender, nonce, to, value, data, gas, tip, True)

    return [
        tx(0, FRESH, 21_000, ETH),  # creates FRESH by a credit
        tx(1, FORWARDER, 100_000, 5, FRESH + bytes(12)),  # CALL reads FRESH's existence
        tx(2, DRAINED, 100_000),  # SELFDESTRUCT: reads and empties DRAINED's balance
        tx(3, DRAINED, 100_000),  # ...again, on what the first one left
        tx(4, b"", 200_000, 7, CREATE_AND_DESTROY),  # created and destroyed in one transaction
        tx(5, READER, 100_000),  # reads the coinbase balance every fee credit changes
        tx(0, BENEFICIARY, 21_000, 3),  # a second transaction of sender 0
        tx(6, FRESH, 21_000, 11),  # commutes with the first credit of FRESH
        tx(7, BENEFICIARY, 21_000, 13),  # commutes with the SELFDESTRUCT credits
    ]


def build_chain(blocks: int) -> tuple[dict[str, Any], list[bytes]]:
    document = genesis()
    builder = DevChainBuilder(document)
    accounts = dev_accounts(SENDERS)
    nonces = [0] * SENDERS
    raws = []
    for number in range(1, blocks + 1):
        template = builder.next_header()
        planned = block_plan(nonces, number)
        signed = [builder.sign(template, p, accounts[p.sender]) for p in planned]
        withdrawal = PlannedWithdrawal(number, 1, BENEFICIARY, 1)
        built = builder.build_block(template, signed, [withdrawal])
        raws.append(rlp.encode(built.block))
    return document, raws


def test_hard_cases_parallel_equals_serial() -> None:
    document, raws = build_chain(3)
    compared = compare_chain(document, raws)
    assert compared.parallel_blocks == 3
    first = compared.executions[0]
    # Speculated in chains of likely dependent transactions (sender 0's two, the two drains,
    # the credits of FRESH and BENEFICIARY...), most commit as they ran. Block 1: the
    # create-and-destroy's SELFDESTRUCT read BENEFICIARY's existence, which the drains of the
    # other chain changed; every block: the coinbase read, which the fee credits of the
    # other chain changed.
    assert 4 in first.reexecuted_indices
    assert all(5 in execution.reexecuted_indices for execution in compared.executions)
    assert all(e.transactions - e.reexecuted >= 7 for e in compared.executions)
