"""BatchedAccountDB.persist leaves the same state root and readable state as py-evm's AccountDB."""

from __future__ import annotations

from typing import Any

from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth_typing import Address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from khipu.execution.state_root import BatchedAccountDB

ADDRESSES = [Address(bytes([n]) * 20) for n in range(1, 7)]

addresses = st.sampled_from(ADDRESSES)
slots = st.integers(0, 5)
operations = st.one_of(
    st.tuples(st.just("balance"), addresses, st.integers(0, 2**70)),
    st.tuples(st.just("nonce"), addresses, st.integers(0, 3)),
    st.tuples(st.just("code"), addresses, st.binary(max_size=40)),
    st.tuples(st.just("storage"), addresses, st.tuples(slots, st.integers(0, 2**256 - 1))),
    st.tuples(st.just("clear-slot"), addresses, slots),
    st.tuples(st.just("delete-storage"), addresses, st.none()),
    st.tuples(st.just("delete-account"), addresses, st.none()),
    st.tuples(st.just("touch"), addresses, st.none()),
    st.tuples(st.just("lock"), addresses, st.none()),
)
Operation = tuple[str, Address, Any]


def apply(db: Any, operation: Operation) -> None:
    kind, address, argument = operation
    if kind == "balance":
        db.set_balance(address, argument)
    elif kind == "nonce":
        db.set_nonce(address, argument)
    elif kind == "code":
        db.set_code(address, argument)
    elif kind == "storage":
        db.set_storage(address, *argument)
    elif kind == "clear-slot":
        db.set_storage(address, argument, 0)
    elif kind == "delete-storage":
        db.delete_storage(address)
    elif kind == "delete-account":
        db.delete_account(address)
    elif kind == "touch":
        db.touch_account(address)
    else:
        db.lock_changes()


def run_blocks(account_db_class: type[AccountDB], blocks: list[list[Operation]]) -> list[Any]:
    """Apply each block's operations and persist; the state root and readable state after each."""
    store = AtomicDB()
    root = BLANK_ROOT_HASH
    seen = []
    for operations in blocks:
        db = account_db_class(store, root)
        for operation in operations:
            apply(db, operation)
        db.lock_changes()
        db.persist()
        root = db.state_root
        reader = AccountDB(store, root)  # a fresh reader: everything must come from the store
        view = [
            (
                reader.get_balance(a),
                reader.get_nonce(a),
                reader.get_code(a),
                reader.account_exists(a),
                tuple(reader.get_storage(a, s) for s in range(6)),
            )
            for a in ADDRESSES
        ]
        seen.append((root, view))
    return seen


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(operations, max_size=30), min_size=1, max_size=3))
def test_batched_persist_matches_account_db(blocks: list[list[Operation]]) -> None:
    assert run_blocks(BatchedAccountDB, blocks) == run_blocks(AccountDB, blocks)


def test_storage_changes_reach_the_account() -> None:
    blocks: list[list[Operation]] = [
        [("balance", ADDRESSES[0], 5), ("storage", ADDRESSES[0], (1, 7))],
        [("clear-slot", ADDRESSES[0], 1), ("storage", ADDRESSES[0], (2, 9))],
        [("delete-storage", ADDRESSES[0], None), ("storage", ADDRESSES[0], (3, 1))],
        [("clear-slot", ADDRESSES[0], 3)],
    ]
    batched = run_blocks(BatchedAccountDB, blocks)
    assert batched == run_blocks(AccountDB, blocks)
    assert [view[0][4] for _root, view in batched] == [
        (0, 7, 0, 0, 0, 0),
        (0, 0, 9, 0, 0, 0),
        (0, 0, 0, 1, 0, 0),
        (0, 0, 0, 0, 0, 0),
    ]
