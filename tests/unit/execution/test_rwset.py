"""The recording State: every kind of read and write lands in the transaction's rw-set."""

from __future__ import annotations

from typing import Any

import pytest
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDB
from eth.vm.execution_context import ExecutionContext
from eth.vm.forks.prague import PragueVM
from eth_typing import Address, BlockNumber, Hash32

from khipu.execution.rwset import AccountWrite, recording_state_class

ALICE = Address(b"\xa1" * 20)
BOB = Address(b"\xb0" * 20)
CONTRACT = Address(b"\xc0" * 20)
NOBODY = Address(b"\x00" * 19 + b"\x99")
COINBASE = Address(b"\xcb" * 20)


@pytest.fixture
def state() -> Any:
    """A recording Prague state holding ALICE (balance 100, nonce 1) and CONTRACT (code,
    storage slots 1 and 2), with its changes locked: recording starts from here."""
    context = ExecutionContext(
        coinbase=COINBASE, timestamp=1, block_number=BlockNumber(1), difficulty=0,
        mix_hash=Hash32(b"\x00" * 32), gas_limit=30_000_000, prev_hashes=(), chain_id=1,
        base_fee_per_gas=7, excess_blob_gas=0,
    )  # fmt: skip
    state_class = recording_state_class(PragueVM.get_state_class())
    vm_state: Any = state_class(AtomicDB(), context, BLANK_ROOT_HASH)
    vm_state.set_balance(ALICE, 100)
    vm_state.set_nonce(ALICE, 1)
    vm_state.set_code(CONTRACT, b"\x60\x00")
    vm_state.set_nonce(CONTRACT, 1)
    vm_state.set_storage(CONTRACT, 1, 11)
    vm_state.set_storage(CONTRACT, 2, 22)
    vm_state.lock_changes()
    vm_state.start_recording()
    return vm_state


def test_recording_class_is_a_subclass_of_the_fork_state_and_cached() -> None:
    state_class = PragueVM.get_state_class()
    recording = recording_state_class(state_class)
    assert issubclass(recording, state_class)
    assert recording_state_class(state_class) is recording


def test_each_read_is_recorded_per_field(state: Any) -> None:
    assert state.get_balance(ALICE) == 100
    assert state.get_nonce(ALICE) == 1
    assert state.get_code(CONTRACT) == b"\x60\x00"
    assert state.get_storage(CONTRACT, 2) == 22
    assert state.account_exists(BOB) is False
    rwset = state.finish_recording()
    assert rwset.reads == {
        ("balance", ALICE), ("nonce", ALICE), ("code", CONTRACT),
        ("storage", CONTRACT, 2), ("exists", BOB),
    }  # fmt: skip
    assert rwset.writes == {}


def test_code_hash_and_code_or_nonce_are_reads_of_code_and_nonce(state: Any) -> None:
    state.get_code_hash(CONTRACT)
    state.has_code_or_nonce(BOB)
    rwset = state.finish_recording()
    assert rwset.reads == {("code", CONTRACT), ("code", BOB), ("nonce", BOB)}


def test_emptiness_check_reads_every_field(state: Any) -> None:
    assert state.account_is_empty(BOB) is True
    rwset = state.finish_recording()
    assert {("exists", BOB), ("balance", BOB), ("nonce", BOB), ("code", BOB)} <= rwset.reads


def test_read_then_written_balance_is_an_absolute_write(state: Any) -> None:
    state.delta_balance(ALICE, -30)  # a debit after the sender's balance check...
    state.get_balance(ALICE)  # ...which read it
    rwset = state.finish_recording()
    assert rwset.writes[ALICE] == AccountWrite(balance=70)
    assert ("balance", ALICE) in rwset.absolute_keys()


def test_unread_credit_is_a_delta_and_creates_the_account_without_reads(state: Any) -> None:
    state.delta_balance(BOB, 5)
    state.delta_balance(COINBASE, 3)
    state.delta_balance(COINBASE, 4)
    # the end-of-transaction EIP-158 checks need no read of a credited account
    assert state.account_exists(BOB) and not state.account_is_empty(BOB)
    rwset = state.finish_recording()
    assert rwset.reads == frozenset()
    assert rwset.writes[BOB] == AccountWrite(exists=True, balance_delta=5)
    assert rwset.writes[COINBASE] == AccountWrite(exists=True, balance_delta=7)
    assert ("balance", BOB) in rwset.written_keys()
    assert ("balance", BOB) not in rwset.absolute_keys()


def test_nonce_increment_reads_and_writes_the_nonce(state: Any) -> None:
    state.increment_nonce(ALICE)
    rwset = state.finish_recording()
    assert ("nonce", ALICE) in rwset.reads
    assert rwset.writes[ALICE] == AccountWrite(nonce=2)


def test_code_write(state: Any) -> None:
    state.set_code(BOB, b"\xfe")
    state.set_nonce(BOB, 1)
    rwset = state.finish_recording()
    assert rwset.writes[BOB] == AccountWrite(exists=True, nonce=1, code=b"\xfe")


def test_storage_writes_are_final_values_of_changed_slots(state: Any) -> None:
    state.set_storage(CONTRACT, 1, 99)
    state.set_storage(CONTRACT, 2, 5)
    state.set_storage(CONTRACT, 2, 22)  # back to what it was: no write
    state.set_storage(CONTRACT, 3, 33)
    rwset = state.finish_recording()
    assert rwset.writes[CONTRACT] == AccountWrite(storage=((1, 99), (3, 33)))
    assert rwset.written_keys() == {("storage", CONTRACT, 1), ("storage", CONTRACT, 3)}


def test_reverted_writes_are_not_writes(state: Any) -> None:
    snapshot = state.snapshot()
    state.set_storage(CONTRACT, 1, 99)
    state.set_balance(ALICE, 1)
    state.revert(snapshot)
    rwset = state.finish_recording()
    assert rwset.writes == {}


def test_selfdestruct_deletes_the_account_and_wipes_its_storage(state: Any) -> None:
    state.delete_account(CONTRACT)
    rwset = state.finish_recording()
    write = rwset.writes[CONTRACT]
    assert write.wiped and write.exists is False and write.nonce == 0
    assert rwset.has_wipe
    assert ("wipe", CONTRACT) in rwset.written_keys()


def test_storage_wipe_of_an_existing_account(state: Any) -> None:
    # a CREATE2 over an address that still has storage clears it
    state.delete_storage(CONTRACT)
    state.set_storage(CONTRACT, 7, 1)
    rwset = state.finish_recording()
    assert rwset.has_wipe
    assert state.get_storage(CONTRACT, 1) == 0


def test_deleting_an_account_that_did_not_exist_is_no_wipe(state: Any) -> None:
    state.delta_balance(NOBODY, 0)  # a touch
    state.delete_account(NOBODY)  # EIP-158 clears it again
    rwset = state.finish_recording()
    assert not rwset.has_wipe
    assert NOBODY not in rwset.writes


def test_finish_without_start_raises(state: Any) -> None:
    state.finish_recording()
    with pytest.raises(RuntimeError):
        state.finish_recording()
