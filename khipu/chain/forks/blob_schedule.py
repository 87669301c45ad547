"""Blob parameters of a fork and the blob fee market formulas that depend on them.

Cancun (EIP-4844) and Prague (EIP-7691) fixed the blob target, the blob maximum and the base fee
update fraction in code; EIP-7840 moved them into the chain configuration (`blobSchedule` in
genesis.json) and EIP-7892 made forks that change nothing else ("blob-parameter-only" forks,
BPO1, BPO2, ...). Osaka (EIP-7918) adds a reserve price: while execution gas is expensive next to
blob gas, the excess blob gas no longer falls by the full target.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth._utils.calculations import fake_exponential

GAS_PER_BLOB = 2**17
MIN_BLOB_BASE_FEE = 1
# EIP-7918: the execution gas a blob is worth at least, priced at the block's base fee
BLOB_BASE_COST = 2**13


class InvalidBlobSchedule(ValueError):
    """A blobSchedule entry is missing a field or holds numbers no fork could use."""


@dataclass(frozen=True)
class BlobSchedule:
    """The blob parameters one fork runs with, as a genesis.json `blobSchedule` entry gives them."""

    target_blobs_per_block: int
    max_blobs_per_block: int
    base_fee_update_fraction: int

    def __post_init__(self) -> None:
        if not 0 < self.target_blobs_per_block <= self.max_blobs_per_block:
            raise InvalidBlobSchedule(
                f"blob target {self.target_blobs_per_block} must be positive and at most "
                f"the maximum {self.max_blobs_per_block}"
            )
        if self.base_fee_update_fraction <= 0:
            raise InvalidBlobSchedule(
                f"base fee update fraction must be positive, got {self.base_fee_update_fraction}"
            )

    @property
    def target_blob_gas_per_block(self) -> int:
        return self.target_blobs_per_block * GAS_PER_BLOB

    @property
    def max_blob_gas_per_block(self) -> int:
        return self.max_blobs_per_block * GAS_PER_BLOB

    def blob_base_fee(self, excess_blob_gas: int) -> int:
        """The price of one unit of blob gas in a block with this excess blob gas (EIP-4844)."""
        return fake_exponential(MIN_BLOB_BASE_FEE, excess_blob_gas, self.base_fee_update_fraction)

    def excess_blob_gas(self, parent_excess_blob_gas: int, parent_blob_gas_used: int) -> int:
        """The excess blob gas of a block from its parent's, by the EIP-4844 rule."""
        parent_blob_gas = parent_excess_blob_gas + parent_blob_gas_used
        if parent_blob_gas < self.target_blob_gas_per_block:
            return 0
        return parent_blob_gas - self.target_blob_gas_per_block

    def excess_blob_gas_with_reserve_price(
        self,
        parent_excess_blob_gas: int,
        parent_blob_gas_used: int,
        parent_base_fee_per_gas: int,
    ) -> int:
        """The excess blob gas of a block from its parent's, by the EIP-7918 rule (Osaka on).

        When a blob's execution-gas reserve price (BLOB_BASE_COST at the parent's base fee) is
        above what the parent's blob gas market charged for a blob, the excess only grows, by the
        parent's blob gas scaled by (max - target) / max, instead of falling by the target.
        """
        parent_blob_gas = parent_excess_blob_gas + parent_blob_gas_used
        if parent_blob_gas < self.target_blob_gas_per_block:
            return 0
        reserve_price = BLOB_BASE_COST * parent_base_fee_per_gas
        blob_price = GAS_PER_BLOB * self.blob_base_fee(parent_excess_blob_gas)
        if reserve_price > blob_price:
            unused_share = self.max_blobs_per_block - self.target_blobs_per_block
            return (
                parent_excess_blob_gas
                + parent_blob_gas_used * unused_share // self.max_blobs_per_block
            )
        return parent_blob_gas - self.target_blob_gas_per_block


# The parameters the forks shipped with, which a genesis blobSchedule may restate.
CANCUN_BLOB_SCHEDULE = BlobSchedule(3, 6, 3_338_477)
PRAGUE_BLOB_SCHEDULE = BlobSchedule(6, 9, 5_007_716)
OSAKA_BLOB_SCHEDULE = PRAGUE_BLOB_SCHEDULE
# Mainnet's blob-parameter-only forks after Osaka (EIP-7892).
MAINNET_BPO1_BLOB_SCHEDULE = BlobSchedule(10, 15, 8_346_193)
MAINNET_BPO2_BLOB_SCHEDULE = BlobSchedule(14, 21, 11_684_671)
