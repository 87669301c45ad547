"""Senders recovered ahead: the workers recover the next block's senders while this process
persists the current one (ParallelBlockExecutor.expect, `khipu import`'s loop); a wrong sender
from them cannot change a block."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from eth.abc import BlockAPI
from eth_keys.datatypes import Signature

from khipu.chain.chain import KhipuChain
from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.importer import BlockImporter, decode_block
from khipu.chain.rules import ChainRules
from khipu.devnet.generate import generate_chain
from khipu.execution.block_executor import ParallelBlockExecutor
from khipu.execution.executor import SpeculationTask, execute_block_batched, speculate
from khipu.execution.senders import FROM_WORKER, SIGNATURE_CHECK, SenderTask, worker_senders
from khipu.storage.chain_store import ChainStore
from tests.chain_helpers import memory_chain, read_blocks

BLOCKS, TXS = 3, 30


@pytest.fixture(scope="module", params=["erc20", "mixed"])
def chain_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """erc20: dynamic-fee transactions; mixed: legacy ones too (their validation checks the
    signature again, which a worker's check replaces)."""
    folder = tmp_path_factory.mktemp(f"ahead-{request.param}")
    generate_chain(folder, BLOCKS, TXS, request.param, seed=9)
    return folder


def test_the_import_loop_has_the_workers_recover_the_next_blocks_senders(
    chain_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the first block's senders are recovered here (at most twice each: the sender, and
    a legacy transaction's signature check); every later block finds them recovered."""
    document = json.loads((chain_folder / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    store = ChainStore.open(tmp_path / "datadir", genesis, document)
    executors: list[ParallelBlockExecutor] = []

    def make_executor(chain: KhipuChain) -> ParallelBlockExecutor:
        executor = ParallelBlockExecutor.with_own_pool(
            chain, tmp_path / "datadir", workers=2, always_parallel=True
        )
        executor.runner.pool.start_workers()  # type: ignore[attr-defined]
        executors.append(executor)
        return executor

    recovered: list[bytes] = []
    original = Signature.recover_public_key_from_msg_hash

    def counting(self: Signature, message_hash: bytes) -> Any:
        recovered.append(message_hash)
        return original(self, message_hash)

    try:
        monkeypatch.setattr(Signature, "recover_public_key_from_msg_hash", counting)
        summary = import_files(
            store, rules, [chain_folder / "chain.rlp"], check_seal=False, executor=make_executor
        )
        monkeypatch.undo()
    finally:
        for executor in executors:
            executor.close()
        store.close()
    last = decode_block(read_blocks(chain_folder / "chain.rlp")[-1], rules)
    assert summary.head.hash == last.header.hash
    (executor,) = executors
    assert executor.senders_ahead == BLOCKS - 1
    assert 0 < len(recovered) <= 2 * TXS  # without the lookahead: at least BLOCKS * TXS


class LyingRunner:
    """Runs speculation here, on `chain`, and answers every SenderTask with one wrong sender
    (and None, "not valid", for the second transaction of each task)."""

    def __init__(self, chain: KhipuChain) -> None:
        self.chain = chain
        self.sender_tasks = 0

    def map(self, tasks: Sequence[Any]) -> list[Any]:
        results: list[Any] = []
        for task in tasks:
            if isinstance(task, SenderTask):
                self.sender_tasks += 1
                count = len(decode_block(task.block_rlp, self.chain.rules).transactions)
                results.append([None if i == 1 else b"\x42" * 20 for i in range(count)])
            else:
                assert isinstance(task, SpeculationTask)
                results.append(speculate(self.chain, task))
        return results


def lying_setup(
    chain_folder: Path,
) -> tuple[Any, list[BlockAPI], LyingRunner, ParallelBlockExecutor]:
    """A memory chain at genesis, the chain's blocks, and an always-parallel executor with
    sender lookahead over a LyingRunner."""
    chain, rules = memory_chain(json.loads((chain_folder / "genesis.json").read_text()))
    blocks = [decode_block(raw, rules) for raw in read_blocks(chain_folder / "chain.rlp")]
    runner = LyingRunner(chain)
    executor = ParallelBlockExecutor(
        chain, runner, workers=2, always_parallel=True, sender_lookahead=True
    )
    return chain, blocks, runner, executor


def test_a_wrong_sender_recovered_ahead_cannot_change_the_block(chain_folder: Path) -> None:
    chain, blocks, runner, executor = lying_setup(chain_folder)
    importer = BlockImporter(chain, check_seal=False, executor=executor)
    try:
        for number, block in enumerate(blocks):
            if number + 1 < len(blocks):
                executor.expect(blocks[number + 1])
            assert importer.import_block(block).header.hash == block.header.hash
    finally:
        executor.close()
    assert runner.sender_tasks == BLOCKS - 1  # one task per later block
    assert executor.senders_ahead == BLOCKS - 1
    # (a parallel block may not need them: its committed transactions ran on the "workers")
    for block in blocks:
        for transaction in block.transactions:
            assert FROM_WORKER not in transaction.__dict__
            assert SIGNATURE_CHECK not in transaction.__dict__
            assert transaction.sender != b"\x42" * 20


def test_a_batched_block_run_with_wrong_senders_falls_back_to_serial(chain_folder: Path) -> None:
    chain, rules = memory_chain(json.loads((chain_folder / "genesis.json").read_text()))
    first, second = (
        decode_block(raw, rules) for raw in read_blocks(chain_folder / "chain.rlp")[:2]
    )
    BlockImporter(chain, check_seal=False).import_block(first)
    lies = [b"\x42" * 20] * len(second.transactions)
    with worker_senders(second.transactions, lies):
        assert all(tx.sender == b"\x42" * 20 for tx in second.transactions)
        execution = execute_block_batched(chain, second)
        # the serial run took them off: py-evm recovered the real ones
        assert all(tx.sender != b"\x42" * 20 for tx in second.transactions)
    assert execution.mode == "serial-fallback"
    assert execution.block.header == second.header


def test_an_expected_block_of_another_parent_is_not_prepared(chain_folder: Path) -> None:
    _, blocks, runner, executor = lying_setup(chain_folder)
    try:
        executor.expect(blocks[2])  # not block 1's child
        executor(blocks[0])
        assert executor.modes == {"parallel": 1}
    finally:
        executor.close()
    assert runner.sender_tasks == 0


def test_no_senders_are_recovered_ahead_after_a_block_run_in_order(chain_folder: Path) -> None:
    """After a batched block (no core to spare, as the adaptive choice found) the workers do
    not recover the next block's senders."""
    chain, rules = memory_chain(json.loads((chain_folder / "genesis.json").read_text()))
    blocks = [decode_block(raw, rules) for raw in read_blocks(chain_folder / "chain.rlp")]
    runner = LyingRunner(chain)
    executor = ParallelBlockExecutor(chain, runner, workers=2, sender_lookahead=True)
    executor.can_parallel = lambda block: False  # type: ignore[method-assign]
    try:
        executor.expect(blocks[1])
        executor(blocks[0])
        assert executor.modes == {"batched": 1}
    finally:
        executor.close()
    assert runner.sender_tasks == 0
