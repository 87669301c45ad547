"""Typed errors of the fork rules added on top of py-evm.

Rules that make a block or a transaction invalid subclass eth_utils.ValidationError, which py-evm's
import path already treats as "this block is invalid". Rules that make one EVM call fail subclass
py-evm's VMError, which ends that call and burns its gas.
"""

from __future__ import annotations

from eth.exceptions import VMError
from eth_utils.exceptions import ValidationError


class InvalidBlobGas(ValidationError):
    """A header's blob gas fields disagree with its parent, its transactions or its fork's limit."""

    def __init__(self, block_number: int, block_hash: bytes, reason: str) -> None:
        super().__init__(f"block {block_number} (0x{block_hash.hex()}): {reason}")
        self.block_number = block_number
        self.block_hash = block_hash
        self.reason = reason


class BlockTooLarge(ValidationError):
    """EIP-7934: the RLP encoding of a block is longer than the execution block size limit."""

    def __init__(self, block_number: int, block_hash: bytes, size: int, limit: int) -> None:
        super().__init__(
            f"block {block_number} (0x{block_hash.hex()}) is {size} bytes of RLP, "
            f"over the limit of {limit}"
        )
        self.block_number = block_number
        self.block_hash = block_hash
        self.size = size
        self.limit = limit


class TransactionGasLimitExceeded(ValidationError):
    """EIP-7825: a transaction asks for more gas than any transaction may."""

    def __init__(self, transaction_hash: bytes, gas: int, cap: int) -> None:
        super().__init__(
            f"transaction 0x{transaction_hash.hex()} has gas limit {gas}, over the cap of {cap}"
        )
        self.transaction_hash = transaction_hash
        self.gas = gas
        self.cap = cap


class TooManyBlobs(ValidationError):
    """EIP-7594: a blob transaction carries more blobs than one transaction may."""

    def __init__(self, transaction_hash: bytes, blob_count: int, limit: int) -> None:
        super().__init__(
            f"transaction 0x{transaction_hash.hex()} carries {blob_count} blobs, "
            f"over the limit of {limit} per transaction"
        )
        self.transaction_hash = transaction_hash
        self.blob_count = blob_count
        self.limit = limit


class ModexpInputTooLong(VMError):
    """EIP-7823: a MODEXP call gave a base, exponent or modulus length over the bound."""

    def __init__(self, field: str, length: int, bound: int) -> None:
        super().__init__(f"MODEXP {field} length {length} is over the bound of {bound} bytes")
        self.field = field
        self.length = length
        self.bound = bound
