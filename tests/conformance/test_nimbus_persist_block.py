"""Real mainnet blocks executed by khipu's importer on their Nimbus pre-state witnesses.

Each of the 33 files in $KHIPU_TESTDATA/mainnet/nimbus-persist-block holds block N's header, its
parent's header, and the trie nodes and code Nimbus read while importing it. The block is rebuilt
(transactions from its transaction trie, uncles from the uncle list), imported with the mainnet
rules, and must give the header's state root, receipts root, bloom and gas used. Uncle ancestry
cannot be checked (the witness has no older headers), see WitnessChain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from khipu.chain.config import ChainConfig
from khipu.chain.presets import genesis_json
from khipu.chain.rules import ChainRules
from tests.conformance.nimbus_witness import import_witness_block, load_witness, rebuild_block
from tests.conftest import require_testdata
from tests.conftest import testdata_root as _testdata_root

pytestmark = pytest.mark.conformance

SUITE = ("mainnet", "nimbus-persist-block")

# Code that py-evm 0.12 loads and Nimbus never read. py-evm fetches a callee's code before it
# charges the CALL's gas (its EIP-7702 delegation lookup); here the only transaction's CALL to
# 0x273930d21e01ee25e4c219b63259d214872220a2 runs out of gas (the tx uses all its 29244 gas),
# so the code never runs and Nimbus did not load it.
UNREAD_CODE: dict[int, frozenset[bytes]] = {
    299804: frozenset(
        {bytes.fromhex("ea54510316808a2b99c14fc291be50fd0a1f3a38f0dd018a433fef84bd897d65")}
    ),
}


def _witness_files() -> list[Path]:
    folder = _testdata_root().joinpath(*SUITE)
    return sorted(folder.glob("block*.json"), key=lambda path: int(path.stem[len("block") :]))


@pytest.fixture(scope="session")
def mainnet_rules() -> ChainRules:
    return ChainRules(ChainConfig.from_json(genesis_json("mainnet")["config"]))


@pytest.mark.parametrize(
    "path", [pytest.param(path, id=path.stem) for path in _witness_files()] or [None]
)
def test_mainnet_block_on_witness(path: Path | None, mainnet_rules: ChainRules) -> None:
    require_testdata(*SUITE)
    assert path is not None
    witness = load_witness(path)
    expected = rebuild_block(witness, mainnet_rules).block.header
    result = import_witness_block(
        witness, mainnet_rules, UNREAD_CODE.get(witness.number, frozenset())
    )
    assert not result.already_known
    assert result.header.block_number == witness.number
    assert result.header.state_root == expected.state_root
    assert result.header.receipt_root == expected.receipt_root
    assert result.header.gas_used == expected.gas_used
    assert result.header.hash == expected.hash


def test_witness_folder_is_complete() -> None:
    require_testdata(*SUITE)
    numbers = {int(path.stem[len("block") :]) for path in _witness_files()}
    assert len(numbers) == 33
    assert {97, 46147, 1149150, 1927662, 2675000} <= numbers


def test_mainnet_rules_of_the_witness_eras(mainnet_rules: ChainRules) -> None:
    assert mainnet_rules.fork_name_by_number(1_149_150) == "frontier"
    assert mainnet_rules.fork_name_by_number(1_150_000) == "homestead"
    assert mainnet_rules.fork_name_by_number(1_927_662) == "homestead"
    assert mainnet_rules.fork_name_by_number(2_675_000) == "spurious_dragon"
    homestead = mainnet_rules.vm_class_of_fork("homestead")
    assert homestead.support_dao_fork  # type: ignore[attr-defined]
    assert homestead.get_dao_fork_block_number() == 1_920_000  # type: ignore[attr-defined]


def test_transactions_come_from_the_transaction_trie(mainnet_rules: ChainRules) -> None:
    folder = require_testdata(*SUITE)
    block = rebuild_block(load_witness(folder / "block46147.json"), mainnet_rules).block
    (transaction,) = block.transactions  # the first transaction on mainnet
    assert transaction.hash.hex() == (
        "5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"
    )
