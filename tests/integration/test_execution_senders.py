"""Senders recovered by the workers: the merge does not recover them again, and a wrong one
sends the block to the serial path instead of changing its result."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_keys.datatypes import Signature

from khipu.chain.importer import BlockImporter, decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution.executor import SpeculationTask, TxOutcome, execute_block_parallel, speculate
from khipu.execution.pool import PoolLimits, WorkerPool
from tests.chain_helpers import memory_chain, read_blocks


@pytest.fixture(scope="module", params=["erc20", "mixed"])
def chain_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-block chain of 40 transactions: erc20 (dynamic-fee transactions), mixed (legacy
    ones too, whose validation checks the signature again)."""
    folder = tmp_path_factory.mktemp(f"senders-{request.param}")
    generate_chain(folder, 1, 40, request.param, seed=3)
    return folder


def reexecute_every_other(outcome: TxOutcome) -> TxOutcome:
    """Make the merge re-execute the even-indexed transactions (as after a conflict), keeping
    the sender the worker recovered: grouped speculation leaves these blocks no conflicts."""
    if outcome.index % 2:
        return outcome
    return dataclasses.replace(outcome, rwset=None)  # its run passed validation: receipt kept


def run_block(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[TxOutcome], TxOutcome] = lambda outcome: outcome,
) -> tuple[Any, Any, int]:
    """The first block executed with two forked workers whose outcomes pass through `change`,
    every other one then sent to re-execution; the execution, the block, and how many public
    keys this process recovered meanwhile."""
    chain, rules = memory_chain(json.loads((folder / "genesis.json").read_text()))
    raw = read_blocks(folder / "chain.rlp")[0]
    BlockImporter(chain, check_seal=False).import_block(decode_block(raw, rules))
    block = decode_block(raw, rules)

    def handler(task: SpeculationTask) -> list[TxOutcome]:
        return [reexecute_every_other(change(outcome)) for outcome in speculate(chain, task)]

    recovered = []
    original = Signature.recover_public_key_from_msg_hash

    def counting(self: Signature, message_hash: bytes) -> Any:
        recovered.append(message_hash)
        return original(self, message_hash)

    with WorkerPool(handler, PoolLimits(workers=2)) as pool:
        pool.start_workers()  # forked before the count starts: only this process counts
        monkeypatch.setattr(Signature, "recover_public_key_from_msg_hash", counting)
        execution = execute_block_parallel(chain, block, pool, speculate_here=False)
        monkeypatch.undo()
    return execution, block, len(recovered)


def test_each_sender_is_recovered_once_here_though_the_merge_re_executes(
    chain_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grouping the transactions into chains needs their senders before dispatch, so this
    process recovers each one once (py-evm caches it); re-executions, committed transactions
    and signature checks of worker-validated transactions recover nothing more."""
    execution, block, recovered = run_block(chain_folder, monkeypatch)
    assert execution.mode == "parallel"
    assert execution.block.header.hash == block.header.hash
    assert execution.reexecuted == len(block.transactions) // 2
    assert recovered == len(block.transactions)


def test_a_wrong_sender_from_a_worker_cannot_change_the_block(
    chain_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lie(outcome: TxOutcome) -> TxOutcome:
        return dataclasses.replace(outcome, sender=b"\x42" * 20)

    execution, block, _recovered = run_block(chain_folder, monkeypatch, lie)
    assert execution.block.header.hash == block.header.hash
    assert all(tx.sender != b"\x42" * 20 for tx in block.transactions)
    assert not any("check_signature_validity" in tx.__dict__ for tx in block.transactions)
