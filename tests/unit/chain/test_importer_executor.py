"""BlockImporter's executor hook: the executor's block is checked against the header like
py-evm's, and its ValidationError becomes InvalidBlock naming the execution check."""

from __future__ import annotations

import json

import pytest
from eth.abc import BlockAPI
from eth_utils import ValidationError

from khipu.chain.importer import BlockImporter, InvalidBlock, decode_block
from khipu.execution.executor import execute_block_serial
from tests.chain_helpers import memory_chain, read_blocks
from tests.conftest import require_testdata


def importer_with(executor_for: str) -> tuple[BlockImporter, list[BlockAPI], list[int]]:
    folder = require_testdata("rpc-compat-prague")
    chain, rules = memory_chain(json.loads((folder / "genesis.json").read_text()))
    blocks = [decode_block(raw, rules) for raw in read_blocks(folder / "chain.rlp")[:12]]
    calls: list[int] = []

    def executor(block: BlockAPI) -> BlockAPI:
        calls.append(block.number)
        if executor_for == "raise" and block.number == 10:
            raise ValidationError("speculation broke")
        executed = execute_block_serial(chain, block)
        if executor_for == "tamper" and block.number == 10:
            return executed.copy(header=executed.header.copy(gas_used=1))
        return executed

    return BlockImporter(chain, check_seal=False, executor=executor), blocks, calls


def test_every_block_goes_through_the_executor_and_reaches_the_same_head() -> None:
    importer, blocks, calls = importer_with("serial")
    for block in blocks:
        result = importer.import_block(block)
        assert result.header.hash == block.header.hash
    assert calls == [block.number for block in blocks]
    assert importer.chain.chaindb.get_canonical_head().hash == blocks[-1].header.hash


@pytest.mark.parametrize(("how", "check"), [("raise", "execution"), ("tamper", "gas used")])
def test_a_bad_executor_result_is_an_invalid_block_and_nothing_of_it_is_stored(
    how: str, check: str
) -> None:
    importer, blocks, _calls = importer_with(how)
    for block in blocks[:9]:
        importer.import_block(block)
    with pytest.raises(InvalidBlock) as caught:
        importer.import_block(blocks[9])
    assert (caught.value.number, caught.value.check) == (10, check)
    assert importer.chain.chaindb.get_canonical_head().block_number == 9
