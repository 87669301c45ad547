"""Pre-values recorded with each read, and the merge's value validation against them."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDB
from eth.vm.execution_context import ExecutionContext
from eth.vm.forks.prague import PragueVM
from eth_hash.auto import keccak
from eth_typing import Address, BlockNumber, Hash32

from khipu.execution.rwset import UNKNOWN, AccountWrite, ReadWriteSet, recording_state_class
from khipu.execution.validation import current_value, read_values_changed

ALICE = Address(b"\xa1" * 20)
BOB = Address(b"\xb0" * 20)
CONTRACT = Address(b"\xc0" * 20)
COINBASE = Address(b"\xcb" * 20)
CODE = b"\x60\x00"


def make_state() -> Any:
    """A recording Prague state holding ALICE (balance 100, nonce 1) and CONTRACT (code,
    nonce 1, slots 1 = 11 and 2 = 22), changes locked, not recording."""
    context = ExecutionContext(
        coinbase=COINBASE, timestamp=1, block_number=BlockNumber(1), difficulty=0,
        mix_hash=Hash32(b"\x00" * 32), gas_limit=30_000_000, prev_hashes=(), chain_id=1,
        base_fee_per_gas=7, excess_blob_gas=0,
    )  # fmt: skip
    state: Any = recording_state_class(PragueVM.get_state_class())(
        AtomicDB(), context, BLANK_ROOT_HASH
    )
    state.set_balance(ALICE, 100)
    state.set_nonce(ALICE, 1)
    state.set_code(CONTRACT, CODE)
    state.set_nonce(CONTRACT, 1)
    state.set_storage(CONTRACT, 1, 11)
    state.set_storage(CONTRACT, 2, 22)
    state.lock_changes()
    return state


@pytest.fixture
def state() -> Any:
    vm_state = make_state()
    vm_state.start_recording()
    return vm_state


# -- pre-values -----------------------------------------------------------------------------


def test_first_reads_record_the_values_seen(state: Any) -> None:
    state.get_balance(ALICE)
    state.get_nonce(ALICE)
    state.get_code(CONTRACT)
    state.get_storage(CONTRACT, 2)
    state.account_exists(BOB)
    values = state.finish_recording().values
    assert values == {
        ("balance", ALICE): 100, ("nonce", ALICE): 1, ("code", CONTRACT): keccak(CODE),
        ("storage", CONTRACT, 2): 22, ("exists", BOB): False,
    }  # fmt: skip


def test_a_key_read_after_the_transaction_wrote_it_keeps_its_value_before_the_write(
    state: Any,
) -> None:
    state.set_storage(CONTRACT, 1, 99)
    assert state.get_storage(CONTRACT, 1) == 99
    state.set_balance(ALICE, 5)
    assert state.get_balance(ALICE) == 5
    state.set_code(BOB, b"\x01")
    assert state.get_code(BOB) == b"\x01"
    state.increment_nonce(CONTRACT)
    assert state.get_nonce(CONTRACT) == 2
    values = state.finish_recording().values
    assert values[("storage", CONTRACT, 1)] == 11
    assert values[("balance", ALICE)] == 100
    assert values[("code", BOB)] == keccak(b"")
    assert values[("nonce", CONTRACT)] == 1


def test_a_later_read_keeps_the_first_value(state: Any) -> None:
    state.get_storage(CONTRACT, 2)
    state.set_storage(CONTRACT, 2, 7)
    state.get_storage(CONTRACT, 2)
    assert state.finish_recording().values[("storage", CONTRACT, 2)] == 22


def test_absolute_writes_carry_their_pre_values(state: Any) -> None:
    state.set_storage(CONTRACT, 5, 1)  # written, never read
    state.set_nonce(BOB, 3)
    rwset = state.finish_recording()
    assert ("storage", CONTRACT, 5) not in rwset.reads
    assert rwset.values[("storage", CONTRACT, 5)] == 0
    assert rwset.values[("nonce", BOB)] == 0


def test_a_slot_read_after_a_wipe_is_zero_for_a_new_account_and_unknown_otherwise(
    state: Any,
) -> None:
    state.delete_storage(BOB)  # BOB did not exist: no storage before either
    state.get_storage(BOB, 1)
    state.delete_account(CONTRACT)
    state.get_storage(CONTRACT, 1)
    values = state.finish_recording().values
    assert values[("storage", BOB, 1)] == 0
    assert values[("storage", CONTRACT, 1)] is UNKNOWN


def test_a_credited_balance_records_no_value(state: Any) -> None:
    state.delta_balance(COINBASE, 10)
    assert state.account_exists(COINBASE)
    rwset = state.finish_recording()
    assert rwset.values == {}
    assert rwset.writes[COINBASE] == AccountWrite(exists=True, balance_delta=10)


# -- validation -----------------------------------------------------------------------------


def rw(values: dict[Any, Any], writes: dict[bytes, AccountWrite] | None = None) -> ReadWriteSet:
    return ReadWriteSet(frozenset(values), writes or {}, dict(values))


def test_current_value_has_the_recorded_form() -> None:
    merged = make_state()
    assert current_value(merged, ("balance", ALICE)) == 100
    assert current_value(merged, ("code", CONTRACT)) == keccak(CODE)
    assert current_value(merged, ("exists", BOB)) is False
    assert current_value(merged, ("storage", CONTRACT, 1)) == 11
    with pytest.raises(ValueError):
        current_value(merged, ("colour", ALICE))


def test_a_key_written_earlier_is_stale_only_if_its_value_changed() -> None:
    merged = make_state()
    reader = rw({("storage", CONTRACT, 1): 11})
    written = {("storage", CONTRACT, 1)}
    assert not read_values_changed(reader, frozenset(), merged, written, set())
    merged.set_storage(CONTRACT, 1, 12)
    assert read_values_changed(reader, frozenset(), merged, written, set())
    # a key no earlier transaction wrote is not even looked up
    assert not read_values_changed(reader, frozenset(), merged, set(), set())


def test_an_inherited_key_is_compared_even_if_no_earlier_transaction_wrote_it() -> None:
    merged = make_state()
    # the chain's earlier transaction set slot 1 to 12; in the merge nobody did
    reader = rw({("storage", CONTRACT, 1): 12})
    assert read_values_changed(reader, {("storage", CONTRACT, 1)}, merged, set(), set())
    reader = rw({("storage", CONTRACT, 1): 11})
    assert not read_values_changed(reader, {("storage", CONTRACT, 1)}, merged, set(), set())


def test_fee_credits_commute_but_a_read_coinbase_balance_must_match() -> None:
    merged = make_state()
    merged.delta_balance(COINBASE, 10)  # an earlier fee credit
    written = {("balance", COINBASE), ("exists", COINBASE)}
    fee = rw({}, {COINBASE: AccountWrite(exists=True, balance_delta=3)})
    assert not read_values_changed(fee, frozenset(), merged, written, set())
    assert read_values_changed(rw({("balance", COINBASE): 0}), frozenset(), merged, written, set())
    assert not read_values_changed(
        rw({("balance", COINBASE): 10}), {("balance", COINBASE)}, merged, written, set()
    )


def test_a_wiped_account_or_an_unknown_value_is_always_stale() -> None:
    merged = make_state()
    reader = rw({("storage", CONTRACT, 1): 11})
    assert read_values_changed(reader, frozenset(), merged, set(), {bytes(CONTRACT)})
    unknown = rw({("storage", CONTRACT, 1): UNKNOWN})
    assert read_values_changed(unknown, frozenset(), merged, set(), set())
    # a key read without a recorded value
    bare = ReadWriteSet(frozenset({("nonce", ALICE)}), {})
    assert read_values_changed(bare, frozenset(), merged, set(), set())


def test_an_unknown_value_stays_unknown_across_processes() -> None:
    copied = pickle.loads(pickle.dumps(rw({("storage", CONTRACT, 1): UNKNOWN})))
    assert read_values_changed(copied, frozenset(), make_state(), set(), set())
    assert UNKNOWN != UNKNOWN  # equal to nothing, itself included
