"""Storage roots computed on workers equal the in-process computation bit for bit."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth_hash.auto import keccak
from eth_typing import Address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from khipu.execution.node_cache import forget_decoded_nodes
from khipu.execution.pool import TaskError
from khipu.execution.state_root import BatchedAccountDB
from khipu.execution.storage_roots import (
    StorageBatch,
    StorageRoot,
    StorageRoots,
    StorageRootTask,
    compute_storage_roots,
    spread,
    storage_root_here,
)
from khipu.execution.trie_batch import BLANK_ROOT, update_trie

ADDRESSES = [Address(bytes([n]) * 20) for n in range(1, 9)]

addresses = st.sampled_from(ADDRESSES)
slots = st.integers(0, 40)
operations = st.one_of(
    st.tuples(st.just("storage"), addresses, st.tuples(slots, st.integers(1, 2**256 - 1))),
    st.tuples(st.just("storage"), addresses, st.tuples(slots, st.integers(1, 3))),
    st.tuples(st.just("zero-slot"), addresses, slots),
    st.tuples(st.just("balance"), addresses, st.integers(0, 2**70)),
    st.tuples(st.just("wipe"), addresses, st.none()),
    st.tuples(st.just("delete-account"), addresses, st.none()),
    st.tuples(st.just("lock"), addresses, st.none()),
)
Operation = tuple[str, Address, Any]


class PickledRunner:
    """Runs tasks as a worker would: pickled both ways, against its own view of the store."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.tasks = 0

    def map(self, tasks: Sequence[StorageRootTask]) -> list[list[StorageRoot]]:
        self.tasks += len(tasks)
        return [
            pickle.loads(
                pickle.dumps(compute_storage_roots(self.store, pickle.loads(pickle.dumps(t))))
            )
            for t in tasks
        ]


class FailingRunner:
    def map(self, tasks: Sequence[Any]) -> list[Any]:
        raise TaskError(0, "a worker died")


def apply(db: Any, operation: Operation) -> None:
    kind, address, argument = operation
    if kind == "storage":
        db.set_storage(address, *argument)
    elif kind == "zero-slot":
        db.set_storage(address, argument, 0)
    elif kind == "balance":
        db.set_balance(address, argument)
    elif kind == "wipe":
        db.delete_storage(address)
    elif kind == "delete-account":
        db.delete_account(address)
    else:
        db.lock_changes()


def run_blocks(
    account_db_class: type[AccountDB], blocks: list[list[Operation]], roots: str | None = None
) -> list[Any]:
    """Persist each block's operations; the state root, readable storage and the store's
    nodes after each. `roots`: None (in-process), "workers" (PickledRunner), "failing"."""
    store = AtomicDB()
    root = BLANK_ROOT_HASH
    seen = []
    for operations in blocks:
        db = account_db_class(store, root)
        if roots is not None:
            runner = PickledRunner(store) if roots == "workers" else FailingRunner()
            db.storage_roots = StorageRoots(runner, 2, min_updates=0, share_here=False)  # type: ignore[attr-defined]
        for operation in operations:
            apply(db, operation)
        db.lock_changes()
        db.persist()
        root = db.state_root
        reader = AccountDB(store, root)
        view = [tuple(reader.get_storage(a, s) for s in range(41)) for a in ADDRESSES]
        seen.append((root, view, dict(store.wrapped_db.kv_store)))  # type: ignore[attr-defined]
    return seen


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(operations, max_size=60), min_size=1, max_size=3))
def test_worker_storage_roots_equal_the_in_process_ones(blocks: list[list[Operation]]) -> None:
    here = run_blocks(BatchedAccountDB, blocks)
    assert run_blocks(BatchedAccountDB, blocks, "workers") == here
    assert run_blocks(BatchedAccountDB, blocks, "failing") == here
    assert [(r, v) for r, v, _nodes in here] == [
        (r, v) for r, v, _nodes in run_blocks(AccountDB, blocks)
    ]


def test_storage_roots_of_many_accounts_are_computed_by_the_workers() -> None:
    store = AtomicDB()
    db = BatchedAccountDB(store, BLANK_ROOT_HASH)
    runner = PickledRunner(store)
    db.storage_roots = StorageRoots(runner, 2, min_updates=0, share_here=False)
    for number, address in enumerate(ADDRESSES):
        for slot in range(number + 3):
            db.set_storage(address, slot, slot + 1)
    db.persist()
    assert runner.tasks == 2
    assert db.storage_roots.counters["remote"] == len(ADDRESSES)
    reference = AccountDB(AtomicDB(), BLANK_ROOT_HASH)
    for number, address in enumerate(ADDRESSES):
        for slot in range(number + 3):
            reference.set_storage(address, slot, slot + 1)
    reference.persist()
    assert db.state_root == reference.state_root


def make_batch(store: dict[bytes, bytes], seed: int, size: int, address: bytes) -> StorageBatch:
    """A batch on a parent trie of 30 slots held in `store`: updates, and deletions of some."""
    parent = {keccak(seed.to_bytes(4, "big") + bytes([n])): rlp.encode(n + 1) for n in range(30)}
    tree = update_trie(store, BLANK_ROOT, parent)
    store.update(tree.nodes)
    deletions = [(key, b"") for key in sorted(parent)[: size // 3]]
    writes = [(keccak(bytes([n]) + address), rlp.encode(n * 7 + 1)) for n in range(size)]
    return StorageBatch(address, tree.root_hash, tuple(sorted(dict(deletions + writes).items())))


def test_a_node_missing_where_the_worker_reads_is_computed_here() -> None:
    full: dict[bytes, bytes] = {}
    batches = [make_batch(full, seed, 10, bytes([seed]) * 20) for seed in range(4)]
    worker_view = dict(full)
    missing_root = batches[1].parent_root
    del worker_view[missing_root]  # this parent is not yet committed where the worker reads
    forget_decoded_nodes()  # a worker process has not decoded it either (earlier tests may have)
    answer = compute_storage_roots(worker_view, StorageRootTask(tuple(batches)))
    assert [root.root_hash is None for root in answer] == [False, True, False, False]

    roots = StorageRoots(PickledRunner(worker_view), 2, min_updates=0, share_here=False)
    forget_decoded_nodes()
    results = roots.compute(full, batches)
    assert roots.counters["missing"] == 1
    for batch in batches:
        assert results[batch.address] == storage_root_here(full, batch)


def test_small_blocks_stay_in_process() -> None:
    store: dict[bytes, bytes] = {}
    batches = [make_batch(store, seed, 5, bytes([seed]) * 20) for seed in range(3)]
    runner = PickledRunner(store)
    roots = StorageRoots(runner, 2, min_updates=100)
    roots.compute(store, batches)
    assert runner.tasks == 0
    assert roots.counters["local"] == 3


def test_spread_balances_updates_longest_first() -> None:
    store: dict[bytes, bytes] = {}
    sizes = [40, 5, 33, 12, 12, 8, 1, 27, 19]
    batches = [make_batch(store, n, size, bytes([n]) * 20) for n, size in enumerate(sizes)]
    groups = spread(batches, 3)
    assert sorted(b.address for g in groups for b in g) == sorted(b.address for b in batches)
    loads = [sum(len(b.updates) for b in group) for group in groups]
    largest = max(len(b.updates) for b in batches)
    assert max(loads) - min(loads) <= largest
    assert len(spread(batches[:2], 5)) == 2  # no empty groups


class TamperingRunner(PickledRunner):
    """Answers with the first account's root under a made-up hash, the second's for another
    address."""

    def map(self, tasks: Sequence[StorageRootTask]) -> list[list[StorageRoot]]:
        answers = super().map(tasks)
        first, second, *rest = answers[0]
        forged = StorageRoot(first.address, b"\x13" * 32, first.nodes)
        moved = StorageRoot(b"\x99" * 20, second.root_hash, second.nodes)
        return [[forged, moved, *rest], *answers[1:]]


def test_an_implausible_worker_answer_is_recomputed_here() -> None:
    store: dict[bytes, bytes] = {}
    batches = [make_batch(store, seed, 12, bytes([seed]) * 20) for seed in range(4)]
    roots = StorageRoots(TamperingRunner(store), 1, min_updates=0, share_here=False)
    results = roots.compute(store, batches)
    assert roots.counters["rejected"] == 2
    assert roots.counters["remote"] == 2
    for batch in batches:
        assert results[batch.address] == storage_root_here(store, batch)
