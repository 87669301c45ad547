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


def run_block(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[TxOutcome], TxOutcome] = lambda outcome: outcome,
) -> tuple[Any, Any, int]:
    """The first block executed with two forked workers whose outcomes pass through `change`;
    the execution, the block, and how many public keys this process recovered meanwhile."""
    chain, rules = memory_chain(json.loads((folder / "genesis.json").read_text()))
    raw = read_blocks(folder / "chain.rlp")[0]
    BlockImporter(chain, check_seal=False).import_block(decode_block(raw, rules))
    block = decode_block(raw, rules)

    def handler(task: SpeculationTask) -> list[TxOutcome]:
        return [change(outcome) for outcome in speculate(chain, task)]

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


def test_the_merge_reuses_the_senders_the_workers_recovered(
    chain_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution, block, recovered = run_block(chain_folder, monkeypatch)
    assert execution.mode == "parallel"
    assert execution.block.header.hash == block.header.hash
    assert execution.reexecuted > 0
    assert recovered == 0


def test_without_worker_senders_each_reexecution_recovers_its_sender(
    chain_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def strip(outcome: TxOutcome) -> TxOutcome:
        return dataclasses.replace(outcome, sender=None)

    execution, block, recovered = run_block(chain_folder, monkeypatch, strip)
    assert execution.mode == "parallel"
    assert execution.block.header.hash == block.header.hash
    # One recovery per re-executed sender, a second one for a signature check (legacy).
    assert recovered >= execution.reexecuted > 0


def test_a_wrong_sender_from_a_worker_is_caught_and_the_block_rerun_serially(
    chain_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lie(outcome: TxOutcome) -> TxOutcome:
        return dataclasses.replace(outcome, sender=b"\x42" * 20)

    execution, block, recovered = run_block(chain_folder, monkeypatch, lie)
    assert execution.mode == "serial-fallback"
    assert execution.block.header.hash == block.header.hash
    assert recovered >= len(block.transactions)  # the serial run recovered every sender itself
    assert all(tx.__dict__.get("sender") != b"\x42" * 20 for tx in block.transactions)
    assert not any("check_signature_validity" in tx.__dict__ for tx in block.transactions)
