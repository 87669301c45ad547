"""Osaka's state: Prague's, with the blob schedule and Osaka's transaction limits."""

from __future__ import annotations

from typing import ClassVar

from eth.abc import SignedTransactionAPI
from eth.vm.forks.prague.state import PragueState

from ..blob_forks import BlobScheduleState
from ..blob_schedule import OSAKA_BLOB_SCHEDULE, BlobSchedule
from .computation import OsakaComputation
from .transactions import validate_osaka_transaction_limits


class OsakaState(BlobScheduleState, PragueState):
    computation_class = OsakaComputation
    blob_schedule: ClassVar[BlobSchedule] = OSAKA_BLOB_SCHEDULE

    def validate_transaction(self, transaction: SignedTransactionAPI) -> None:
        """Prague's checks after Osaka's limits (EIP-7825 gas cap, EIP-7594 blobs per tx).

        Raises a ValidationError subclass naming the transaction when one fails.
        """
        validate_osaka_transaction_limits(transaction)
        super().validate_transaction(transaction)
