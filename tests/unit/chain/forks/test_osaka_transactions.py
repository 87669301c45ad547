"""Osaka's transaction and block limits: EIP-7825 gas cap, EIP-7594 blobs per transaction,
EIP-7934 block size."""

from __future__ import annotations

from typing import Any

import pytest
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_keys import keys
from osaka_fixtures import CHAIN_ID, vm_at_genesis

from khipu.chain.forks import OsakaVM
from khipu.chain.forks.errors import BlockTooLarge, TooManyBlobs, TransactionGasLimitExceeded
from khipu.chain.forks.osaka import validate_block_size
from khipu.chain.forks.osaka.constants import MAX_RLP_BLOCK_SIZE
from khipu.chain.forks.osaka.transactions import validate_osaka_transaction_limits

SENDER_KEY = keys.PrivateKey(b"\x01" * 32)
SENDER = SENDER_KEY.public_key.to_canonical_address()
RECIPIENT = b"\x22" * 20
GAS_CAP = 2**24


def as_prague_transaction(transaction: Any) -> Any:
    # py-evm signs into London's or Cancun's typed class, which Prague blocks cannot encode
    return PragueTransactionBuilder.decode(transaction.encode())


def transfer(gas: int, data: bytes = b"") -> Any:
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        chain_id=CHAIN_ID,
        nonce=0,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=10**10,
        gas=gas,
        to=RECIPIENT,
        value=1,
        data=data,
        access_list=[],
    )
    return as_prague_transaction(unsigned.as_signed_transaction(SENDER_KEY))


def blob_transaction(blob_count: int) -> Any:
    unsigned = PragueTransactionBuilder.new_unsigned_blob_transaction(
        chain_id=CHAIN_ID,
        nonce=0,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=10**10,
        gas=100_000,
        to=RECIPIENT,
        value=0,
        data=b"",
        access_list=[],
        max_fee_per_blob_gas=10**9,
        blob_versioned_hashes=[b"\x01" + bytes([index]) * 31 for index in range(blob_count)],
    )
    return as_prague_transaction(unsigned.as_signed_transaction(SENDER_KEY))


def funded_vm(vm_class: type) -> Any:
    return vm_at_genesis(vm_class, balances={SENDER: 10**24})


def test_gas_limit_up_to_the_cap_is_accepted() -> None:
    validate_osaka_transaction_limits(transfer(GAS_CAP))
    vm = funded_vm(OsakaVM)
    _, computation = vm.apply_transaction(vm.get_header(), transfer(GAS_CAP))
    assert computation.is_success


def test_gas_limit_over_the_cap_is_refused_in_osaka_only() -> None:
    transaction = transfer(GAS_CAP + 1)
    with pytest.raises(TransactionGasLimitExceeded) as refused:
        validate_osaka_transaction_limits(transaction)
    assert refused.value.gas == GAS_CAP + 1
    assert refused.value.transaction_hash == transaction.hash

    osaka = funded_vm(OsakaVM)
    with pytest.raises(TransactionGasLimitExceeded):
        osaka.apply_transaction(osaka.get_header(), transaction)
    prague = funded_vm(PragueVM)
    _, computation = prague.apply_transaction(prague.get_header(), transaction)
    assert computation.is_success


def test_six_blobs_per_transaction_are_allowed_seven_are_not() -> None:
    validate_osaka_transaction_limits(blob_transaction(6))
    with pytest.raises(TooManyBlobs) as refused:
        validate_osaka_transaction_limits(blob_transaction(7))
    assert refused.value.blob_count == 7
    osaka = funded_vm(OsakaVM)
    with pytest.raises(TooManyBlobs):
        osaka.apply_transaction(osaka.get_header(), blob_transaction(7))


def test_block_size_limit_is_8_mib_of_rlp() -> None:
    assert MAX_RLP_BLOCK_SIZE == 10 * 2**20 - 2 * 2**20
    vm = funded_vm(OsakaVM)
    small = vm.get_block()
    validate_block_size(small)
    # a transaction of 9 MB of call data: the block is over the limit whatever its gas
    large = small.copy(transactions=[transfer(GAS_CAP, data=b"\x01" * (9 * 10**6))])
    with pytest.raises(BlockTooLarge) as refused:
        validate_block_size(large)
    assert refused.value.size > MAX_RLP_BLOCK_SIZE
    assert refused.value.block_number == 1


def test_osaka_block_validation_checks_the_size_first() -> None:
    vm = funded_vm(OsakaVM)
    large = vm.get_block().copy(transactions=[transfer(GAS_CAP, data=b"\x01" * (9 * 10**6))])
    with pytest.raises(BlockTooLarge):
        vm.validate_block(large)
