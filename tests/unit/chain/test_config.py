"""Reading geth-style genesis.json documents."""

from __future__ import annotations

import pytest

from khipu.chain.config import ChainConfig, Genesis, GenesisError, parse_quantity


@pytest.mark.parametrize(
    ("value", "expected"), [("0x1f", 31), ("31", 31), (31, 31), ("0x0", 0), ("0X10", 16)]
)
def test_quantities_in_every_form_geth_accepts(value: object, expected: int) -> None:
    assert parse_quantity(value, "field") == expected


@pytest.mark.parametrize("value", ["0xzz", "-1", True, None, 1.5, "1e3"])
def test_bad_quantities_name_the_field(value: object) -> None:
    with pytest.raises(GenesisError, match="gasLimit"):
        parse_quantity(value, "gasLimit")


def test_config_reads_block_and_time_forks_dao_ttd_and_blob_schedule() -> None:
    config = ChainConfig.from_json(
        {
            "chainId": 1,
            "homesteadBlock": 1150000,
            "daoForkBlock": 1920000,
            "daoForkSupport": True,
            "eip150Block": "0x259518",
            "terminalTotalDifficulty": "58750000000000000000000",
            "shanghaiTime": 1681338455,
            "blobSchedule": {"cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3338477}},
        }
    )
    assert config.block_forks == {"homestead": 1150000, "tangerine_whistle": 2463000}
    assert config.time_forks == {"shanghai": 1681338455}
    assert config.dao_fork_block == 1920000 and config.dao_fork_support
    assert config.terminal_total_difficulty == 58750 * 10**18
    assert config.blob_schedule["cancun"].base_fee_update_fraction == 3338477


def test_genesis_alloc_with_code_storage_and_unprefixed_addresses() -> None:
    genesis = Genesis.from_json(
        {
            "config": {"chainId": 5},
            "gasLimit": "0x1388",
            "alloc": {
                "00000000000000000000000000000000000000aa": {
                    "balance": "1000",
                    "nonce": "0x2",
                    "code": "0x6000",
                    "storage": {"0x01": "0x02"},
                }
            },
        }
    )
    account = genesis.alloc[bytes.fromhex("00" * 19 + "aa")]
    assert (account.balance, account.nonce, account.code) == (1000, 2, b"\x60\x00")
    assert account.storage == {1: 2}
    assert genesis.gas_limit == 5000


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({}, "config"),
        ({"config": {}}, "chainId"),
        ({"config": {"chainId": 1}, "alloc": {"0xzz": {}}}, "alloc"),
        ({"config": {"chainId": 1}, "alloc": {"0x01": {"balance": "x"}}}, "balance"),
        ({"config": {"chainId": 1, "londonBlock": "soon"}}, "londonBlock"),
    ],
)
def test_malformed_genesis_names_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(GenesisError, match=field):
        Genesis.from_json(document)
