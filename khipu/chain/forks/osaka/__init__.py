"""The Osaka fork (execution layer of Fusaka, EIP-7607) on py-evm.

What changes over Prague, and where:
- EIP-7939 CLZ opcode: opcodes.py
- EIP-7823 MODEXP input bounds, EIP-7883 MODEXP repricing: modexp.py
- EIP-7951 P256VERIFY precompile at 0x100: p256verify.py
- EIP-7825 transaction gas limit cap, EIP-7594 blobs per transaction: transactions.py, state.py
- EIP-7918 blob base fee bounded by execution cost: ..blob_schedule, ..blob_forks
- EIP-7934 RLP block size limit: OsakaVM.validate_block below
"""

from __future__ import annotations

from typing import ClassVar

import rlp  # type: ignore[import-untyped]
from eth.abc import BlockAPI
from eth.vm.forks.prague import PragueVM
from eth.vm.state import BaseState

from ..blob_forks import BlobScheduleVM
from ..blob_schedule import OSAKA_BLOB_SCHEDULE, BlobSchedule
from ..errors import BlockTooLarge
from .blocks import OsakaBlock
from .constants import MAX_RLP_BLOCK_SIZE
from .state import OsakaState


class OsakaVM(BlobScheduleVM, PragueVM):  # type: ignore[misc]
    fork = "osaka"

    block_class: type[OsakaBlock] = OsakaBlock
    _state_class: type[BaseState] = OsakaState

    blob_schedule: ClassVar[BlobSchedule] = OSAKA_BLOB_SCHEDULE
    blob_base_fee_bounded_by_execution_cost: ClassVar[bool] = True

    def validate_block(self, block: BlockAPI) -> None:
        """Prague's block checks, after the EIP-7934 size limit.

        Raises BlockTooLarge when the block's RLP is over MAX_RLP_BLOCK_SIZE bytes.
        """
        validate_block_size(block)
        super().validate_block(block)


def validate_block_size(block: BlockAPI) -> None:
    """Raise BlockTooLarge when the RLP encoding of `block` is over the EIP-7934 limit."""
    size = len(rlp.encode(block))
    if size > MAX_RLP_BLOCK_SIZE:
        raise BlockTooLarge(block.number, block.header.hash, size, MAX_RLP_BLOCK_SIZE)


__all__ = ["OsakaBlock", "OsakaState", "OsakaVM", "validate_block_size"]
