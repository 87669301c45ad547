"""Osaka's transaction validity rules. Transaction formats are Prague's, unchanged."""

from __future__ import annotations

from eth.abc import SignedTransactionAPI
from eth.vm.forks.cancun.constants import BLOB_TX_TYPE

from ..errors import TooManyBlobs, TransactionGasLimitExceeded
from .constants import MAX_BLOBS_PER_TRANSACTION, MAX_TRANSACTION_GAS_LIMIT


def validate_osaka_transaction_limits(transaction: SignedTransactionAPI) -> None:
    """Check the limits Osaka puts on every transaction.

    Raises TransactionGasLimitExceeded when the gas limit is over 2**24 (EIP-7825), TooManyBlobs
    when a blob transaction carries more than 6 blobs (EIP-7594).
    """
    if transaction.gas > MAX_TRANSACTION_GAS_LIMIT:
        raise TransactionGasLimitExceeded(
            transaction.hash, transaction.gas, MAX_TRANSACTION_GAS_LIMIT
        )
    if transaction.type_id == BLOB_TX_TYPE:
        blob_count = len(transaction.blob_versioned_hashes)
        if blob_count > MAX_BLOBS_PER_TRANSACTION:
            raise TooManyBlobs(transaction.hash, blob_count, MAX_BLOBS_PER_TRANSACTION)
