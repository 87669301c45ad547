"""The fork schedule: which py-evm VM executes which block."""

from __future__ import annotations

import pytest

from khipu.chain.config import ChainConfig
from khipu.chain.rules import ChainRules

MAINNET_LIKE = ChainConfig.from_json(
    {
        "chainId": 1,
        "homesteadBlock": 1150000,
        "daoForkBlock": 1920000,
        "daoForkSupport": True,
        "eip150Block": 2463000,
        "eip155Block": 2675000,
        "eip158Block": 2675000,
        "byzantiumBlock": 4370000,
        "constantinopleBlock": 7280000,
        "petersburgBlock": 7280000,
        "istanbulBlock": 9069000,
        "muirGlacierBlock": 9200000,
        "berlinBlock": 12244000,
        "londonBlock": 12965000,
        "arrowGlacierBlock": 13773000,
        "grayGlacierBlock": 15050000,
        "terminalTotalDifficulty": 58750000000000000000000,
        "shanghaiTime": 1681338455,
        "cancunTime": 1710338135,
        "pragueTime": 1746612311,
    }
)


@pytest.mark.parametrize(
    ("number", "timestamp", "difficulty", "fork"),
    [
        (0, 0, 1, "frontier"),
        (1149999, 0, 1, "frontier"),
        (1150000, 0, 1, "homestead"),
        (1920000, 0, 1, "homestead"),
        (2463000, 0, 1, "tangerine_whistle"),
        (2675000, 0, 1, "spurious_dragon"),
        (7280000, 0, 1, "petersburg"),  # shares its block with Constantinople: the later wins
        (15537393, 1663224162, 1, "gray_glacier"),
        (15537394, 1663224179, 0, "paris"),  # difficulty 0 after the TTD: the merge
        (17034870, 1681338455, 0, "shanghai"),
        (19426587, 1710338135, 0, "cancun"),
        (22431084, 1746612311, 0, "prague"),
    ],
)
def test_forks_by_number_time_and_merge(
    number: int, timestamp: int, difficulty: int, fork: str
) -> None:
    assert ChainRules(MAINNET_LIKE).fork_name(number, timestamp, difficulty) == fork


def test_vm_classes_are_configured_for_the_chain() -> None:
    rules = ChainRules(MAINNET_LIKE)
    homestead = rules.vm_class(1920000, 0, 1)
    assert homestead.support_dao_fork  # type: ignore[attr-defined]
    assert homestead.get_dao_fork_block_number() == 1920000  # type: ignore[attr-defined]
    no_dao = ChainRules(ChainConfig.from_json({"chainId": 3, "homesteadBlock": 0}))
    assert not no_dao.vm_class(5, 0, 1).support_dao_fork  # type: ignore[attr-defined]


def test_without_ttd_a_zero_difficulty_block_is_not_proof_of_stake() -> None:
    rules = ChainRules(ChainConfig.from_json({"chainId": 1, "homesteadBlock": 0}))
    assert rules.fork_name(10, 100, 0) == "homestead"


def test_fork_points_count_dao_eip155_and_netsplit_blocks() -> None:
    config = ChainConfig.from_json(
        {"chainId": 9, "homesteadBlock": 2, "daoForkBlock": 3, "daoForkSupport": True,
         "eip155Block": 4, "eip158Block": 4, "mergeNetsplitBlock": 7, "shanghaiTime": 50}
    )  # fmt: skip
    points = ChainRules(config).fork_points(b"\x01" * 32, genesis_time=0)
    assert points.blocks == (2, 3, 4, 7)
    assert points.times == (50,)
