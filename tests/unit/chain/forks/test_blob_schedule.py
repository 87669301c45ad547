"""Blob fee market formulas per schedule, against values worked out by hand from EIP-4844,
EIP-7691 (Prague's numbers) and EIP-7918 (Osaka's reserve price)."""

from __future__ import annotations

import json

import pytest
from osaka_fixtures import eip4844_fake_exponential, rpc_compat_path

from khipu.chain.config import ChainConfig
from khipu.chain.forks import (
    DEFAULT_BLOB_SCHEDULES,
    BlobSchedule,
    InvalidBlobSchedule,
)
from khipu.chain.forks.blob_schedule import (
    CANCUN_BLOB_SCHEDULE,
    MAINNET_BPO1_BLOB_SCHEDULE,
    OSAKA_BLOB_SCHEDULE,
    PRAGUE_BLOB_SCHEDULE,
)
from khipu.chain.rules import ChainRules

BLOB = 2**17  # gas per blob


def test_blob_base_fee() -> None:
    # no excess: the minimum, 1 wei
    assert CANCUN_BLOB_SCHEDULE.blob_base_fee(0) == 1
    # excess equal to the update fraction: floor(e) = 2
    assert CANCUN_BLOB_SCHEDULE.blob_base_fee(3_338_477) == 2
    assert PRAGUE_BLOB_SCHEDULE.blob_base_fee(5_007_716) == 2
    # ten fractions: floor(e^10) = 22026, within the Taylor series' rounding
    assert CANCUN_BLOB_SCHEDULE.blob_base_fee(33_384_770) == eip4844_fake_exponential(
        1, 33_384_770, 3_338_477
    )
    assert 22_000 < CANCUN_BLOB_SCHEDULE.blob_base_fee(33_384_770) <= 22_026
    # a larger fraction makes the same excess cheaper
    assert MAINNET_BPO1_BLOB_SCHEDULE.blob_base_fee(33_384_770) < (
        PRAGUE_BLOB_SCHEDULE.blob_base_fee(33_384_770)
    )


@pytest.mark.parametrize(
    ("schedule", "parent_excess", "parent_used", "expected"),
    [
        # Cancun, target 3 blobs: 6 blobs used leave 3 blobs of excess
        (CANCUN_BLOB_SCHEDULE, 0, 6 * BLOB, 3 * BLOB),
        # at most the target: the excess drains to zero, never below
        (CANCUN_BLOB_SCHEDULE, 1 * BLOB, 1 * BLOB, 0),
        (CANCUN_BLOB_SCHEDULE, 2 * BLOB, 1 * BLOB, 0),
        # Prague, target 6: the same 6 blobs now leave nothing, 9 leave 3
        (PRAGUE_BLOB_SCHEDULE, 0, 6 * BLOB, 0),
        (PRAGUE_BLOB_SCHEDULE, 5 * BLOB, 9 * BLOB, 8 * BLOB),
        # BPO1, target 10
        (MAINNET_BPO1_BLOB_SCHEDULE, 7 * BLOB, 12 * BLOB, 9 * BLOB),
    ],
)
def test_excess_blob_gas_eip4844_rule(
    schedule: BlobSchedule, parent_excess: int, parent_used: int, expected: int
) -> None:
    assert schedule.excess_blob_gas(parent_excess, parent_used) == expected


def test_reserve_price_rule_of_eip7918() -> None:
    osaka = OSAKA_BLOB_SCHEDULE  # target 6, max 9
    excess, used = 6 * BLOB, 6 * BLOB
    # the parent's blob base fee at 6 blobs of excess is still 1 wei: a blob costs 2^17 wei,
    # the reserve price is 2^13 * base fee, so the reserve binds once the base fee passes 16
    assert osaka.blob_base_fee(excess) == 1
    # base fee 16: 2^13 * 16 == 2^17, not above: the EIP-4844 rule, 12 - 6 = 6 blobs
    assert osaka.excess_blob_gas_with_reserve_price(excess, used, 16) == 6 * BLOB
    # base fee 17: the excess grows by used * (9 - 6) / 9 = 2 blobs: 8 blobs
    assert osaka.excess_blob_gas_with_reserve_price(excess, used, 17) == 8 * BLOB
    # below the target the excess is zero whatever the base fee
    assert osaka.excess_blob_gas_with_reserve_price(0, 5 * BLOB, 10**12) == 0
    # BPO1, target 10, max 15: 12 blobs used at a high base fee add 12 * 5 / 15 = 4 blobs
    bpo1 = MAINNET_BPO1_BLOB_SCHEDULE
    assert bpo1.excess_blob_gas_with_reserve_price(0, 12 * BLOB, 10**9) == 4 * BLOB
    assert bpo1.excess_blob_gas(0, 12 * BLOB) == 2 * BLOB


def test_reserve_price_compares_against_the_parents_blob_price() -> None:
    # a parent excess high enough that blobs cost more than the reserve: EIP-4844 rule again
    osaka = OSAKA_BLOB_SCHEDULE
    excess = 40 * 5_007_716  # blob base fee e^40, far above any base fee * 2^13 / 2^17
    assert osaka.excess_blob_gas_with_reserve_price(excess, 9 * BLOB, 10**9) == (
        excess + 9 * BLOB - 6 * BLOB
    )


def test_limits_in_gas() -> None:
    assert PRAGUE_BLOB_SCHEDULE.max_blob_gas_per_block == 1_179_648
    assert PRAGUE_BLOB_SCHEDULE.target_blob_gas_per_block == 786_432
    assert CANCUN_BLOB_SCHEDULE.max_blob_gas_per_block == 786_432


def test_schedule_from_the_rpc_compat_genesis() -> None:
    config = ChainConfig.from_json(
        json.loads(rpc_compat_path("genesis.json").read_text())["config"]
    )
    rules = ChainRules(config)
    assert set(config.blob_schedule) == {"cancun", "prague", "osaka", "bpo1", "bpo2"}
    assert rules.blob_schedule("cancun") == DEFAULT_BLOB_SCHEDULES["cancun"]
    assert rules.blob_schedule("osaka") == DEFAULT_BLOB_SCHEDULES["osaka"]
    assert rules.blob_schedule("bpo2") == BlobSchedule(14, 21, 11_684_671)


@pytest.mark.parametrize(
    "entry",
    [
        {"target": 16, "max": 15, "baseFeeUpdateFraction": 1},
        {"target": 1, "max": 15, "baseFeeUpdateFraction": 0},
    ],
)
def test_impossible_schedules_are_refused(entry: dict[str, object]) -> None:
    config = ChainConfig.from_json(
        {"chainId": 1, "cancunTime": 0, "shanghaiTime": 0, "blobSchedule": {"cancun": entry}}
    )
    with pytest.raises(InvalidBlobSchedule):
        ChainRules(config).vm_class_of_fork("cancun")
