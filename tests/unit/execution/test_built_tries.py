"""The merging VM's transaction trie reused by py-evm's validate_block (built_tries.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_utils import ValidationError

from khipu.chain.importer import decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution import built_tries
from khipu.execution.executor import _new_vm, execute_block_batched, execute_block_serial
from khipu.execution.merge import parallel_vm_class
from khipu.execution.trie_batch import ordered_trie
from tests.chain_helpers import memory_chain, read_blocks


@pytest.fixture(scope="module")
def chain_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("built-tries")
    generate_chain(folder, 1, 12, "mixed", seed=5)
    return folder


def first_block(folder: Path) -> tuple[Any, Any]:
    chain, rules = memory_chain(json.loads((folder / "genesis.json").read_text()))
    return chain, decode_block(read_blocks(folder / "chain.rlp")[0], rules)


def counting_pyevm(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls that reach py-evm's own trie builder."""
    calls: list[int] = []
    original = built_tries.pyevm_make_trie_root_and_nodes

    def counting(items: Any) -> Any:
        calls.append(len(items))
        return original(items)

    monkeypatch.setattr(built_tries, "pyevm_make_trie_root_and_nodes", counting)
    return calls


def test_the_merge_builds_the_transaction_trie_once(
    chain_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, block = first_block(chain_folder)
    calls = counting_pyevm(monkeypatch)
    execution = execute_block_batched(chain, block)
    assert execution.mode == "batched"
    assert execution.block.header == block.header
    assert calls == []  # validate_block reused the merge's trie
    serial = execute_block_serial(chain, first_block(chain_folder)[1])
    assert serial.header == block.header
    assert calls  # py-evm's serial path still builds its own


def test_the_reused_root_is_still_checked_against_the_header(chain_folder: Path) -> None:
    chain, block = first_block(chain_folder)
    # A wrong reused root fails py-evm's check: the check runs on what is reused.
    vm_class = chain.rules.vm_class_for_header(block.header)

    class WrongTrieVM(parallel_vm_class(vm_class)):  # type: ignore[misc]
        def set_block_transactions_and_withdrawals(self, *args: Any, **kwargs: Any) -> Any:
            filled = super().set_block_transactions_and_withdrawals(*args, **kwargs)
            transactions, _root, nodes = self.built_transaction_trie
            self.built_transaction_trie = (transactions, b"\x01" * 32, nodes)
            return filled

    vm = _new_vm(chain, WrongTrieVM, block)
    with pytest.raises(ValidationError, match="transaction_root"):
        vm.import_block(block)


def test_other_items_and_other_contexts_get_pyevms_trie(chain_folder: Path) -> None:
    block = first_block(chain_folder)[1]
    transactions = block.transactions
    real = built_tries.pyevm_make_trie_root_and_nodes(transactions)
    wrong = (b"\x02" * 32, {})
    assert built_tries.make_trie_root_and_nodes(transactions) == real  # no context
    with built_tries.reusing_transaction_trie(transactions, *wrong):
        assert built_tries.make_trie_root_and_nodes(transactions) == wrong
        assert built_tries.make_trie_root_and_nodes(transactions[1:]) != wrong
        # equal encodings are not enough: only the very objects the trie was built from
        copies = [first_block(chain_folder)[1].transactions[0], *transactions[1:]]
        assert copies[0] is not transactions[0]
        assert built_tries.make_trie_root_and_nodes(copies) == real
    assert built_tries.make_trie_root_and_nodes(transactions) == real
    fast = ordered_trie([t.encode() for t in transactions])
    assert (fast.root_hash, fast.nodes) == real
