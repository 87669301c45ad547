"""The end-of-block storage-trie updates of a block's accounts, spread over the worker pool.

When a block ends, `BatchedAccountDB.persist` has, for every account whose storage changed, the
storage root it had in the parent state and the sorted slot updates (trie key, RLP value; b""
deletes). Each account's trie is independent of the others', so `StorageRoots.compute` sends
them to the workers as `StorageRootTask`s, spread by the longest-processing-time rule on the
number of updates, while this process computes one more share itself. A worker applies the
updates with `update_trie` on the parent state it reads from the store, exactly as this process
would, and returns the new root with the new nodes; this process persists the nodes and builds
the account trie with the roots.

Nothing a worker cannot do is assumed: a storage trie node missing from a worker's store (a
parent state not yet committed where the worker reads) comes back as `root_hash=None` and that
account is computed here; a pool that fails (a worker crash past the pool's retries, a task
that raised, no worker available) sends its whole share back here. Blocks with fewer than
`min_updates` slot updates in all stay in this process: a task's round trip costs more.
A block whose storage changes are all in one account stays here too (one trie, one task).
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_hash.auto import keccak
from eth_typing import Hash32

from khipu.execution.node_cache import NodeStore
from khipu.execution.trie_batch import BLANK_ROOT, MissingTrieNodeError, TrieUpdate, update_trie

log = logging.getLogger("khipu.execution.roots")

# Below this many slot updates in a block, the storage roots are computed in this process.
# Measured with `python -m benchmarks.storage_roots` (2 shared cores, load ~3, 16 accounts):
# here / on 2 workers: 400 updates 12 / 26 ms, 1000: 45 / 56 ms, 1600: 53 / 51 ms, 3200: 102 /
# 72 ms. Below ~1500 the round trip (pickling the new nodes back) costs more than it saves.
MIN_UPDATES_FOR_WORKERS = 1500


@dataclass(frozen=True)
class StorageBatch:
    """The storage updates of one account: `updates` are (trie key = keccak(slot), RLP of the
    new value, b"" to delete), sorted by key, applied to the trie at `parent_root`."""

    address: bytes
    parent_root: bytes
    updates: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class StorageRootTask:
    """A worker task: the storage batches of some of a block's accounts."""

    batches: tuple[StorageBatch, ...]


@dataclass(frozen=True)
class StorageRoot:
    """A worker's result for one account: its new storage root and the new trie nodes, or
    `root_hash` None if a node on a changed path was not in the worker's store."""

    address: bytes
    root_hash: bytes | None
    nodes: dict[bytes, bytes] = field(default_factory=dict)


class RootTaskRunner(Protocol):
    """Runs tasks on workers and returns their results in order (a WorkerPool, a LocalPool,
    the node's ExecutionClient); raises if it cannot."""

    def map(self, tasks: Sequence[Any]) -> list[Any]: ...


def storage_root_here(store: NodeStore, batch: StorageBatch) -> TrieUpdate:
    """The new storage root and nodes of `batch`, computed in this process.

    Raises MissingTrieNodeError if a node on a changed path is not in `store`.
    """
    return update_trie(store, batch.parent_root, dict(batch.updates))


def compute_storage_roots(store: NodeStore, task: StorageRootTask) -> list[StorageRoot]:
    """A worker's handling of `task`: one StorageRoot per batch, in order; a batch whose trie
    has a node missing from `store` gets `root_hash` None (never raises for that)."""
    results = []
    for batch in task.batches:
        try:
            update = storage_root_here(store, batch)
        except MissingTrieNodeError as error:
            log.debug("storage root of 0x%s left to the merge: %s", batch.address.hex(), error)
            results.append(StorageRoot(batch.address, None))
            continue
        results.append(StorageRoot(batch.address, update.root_hash, update.nodes))
    return results


def spread(batches: Sequence[StorageBatch], bins: int) -> list[list[StorageBatch]]:
    """`batches` in `bins` groups of nearly equal total updates (longest processing time
    first: the largest batch goes to the least loaded group). Empty groups are dropped."""
    groups: list[list[StorageBatch]] = [[] for _ in range(max(1, bins))]
    loads = [(0, position) for position in range(len(groups))]
    for batch in sorted(batches, key=lambda b: (-len(b.updates), b.address)):
        load, position = heapq.heappop(loads)
        groups[position].append(batch)
        heapq.heappush(loads, (load + len(batch.updates), position))
    return [group for group in groups if group]


class StorageRoots:
    """Computes a block's storage roots on `runner`'s workers (None: all in this process).

    `workers` is how many shares go to the runner; with `share_here` (default: if the machine
    has more cores than `workers`) this process computes one more share while the workers run
    theirs (only when `runner` is a pool that will not fork meanwhile, see
    executor._forks_nothing). `counters` counts "blocks", "tasks" (sent to workers), "remote"
    and "local" accounts, "missing" (accounts a worker could not compute), "rejected" (answers
    failing the cheap check of `_plausible`) and "fallbacks" (runs whose workers failed); the
    last three are computed here. `seconds` is the time of the last block's state root
    (storage and account tries), set by BatchedAccountDB.
    """

    def __init__(
        self,
        runner: RootTaskRunner | None,
        workers: int,
        *,
        min_updates: int = MIN_UPDATES_FOR_WORKERS,
        share_here: bool | None = None,
    ) -> None:
        self.runner = runner
        self.workers = max(1, workers)
        self.min_updates = min_updates
        # This process takes a share only if a core is left for it beside the workers: on 2
        # cores with 2 workers it would compete with them (measured: slower than waiting).
        self.share_here = (os.cpu_count() or 1) > self.workers if share_here is None else share_here
        self.counters: Counter[str] = Counter()
        self.seconds = 0.0

    def compute(self, store: NodeStore, batches: Sequence[StorageBatch]) -> dict[bytes, TrieUpdate]:
        """Address -> new storage root and nodes for every batch; the same results as
        `storage_root_here` on each, wherever they were computed.

        Raises MissingTrieNodeError if a node is missing from `store` too.
        """
        self.counters["blocks"] += 1
        total = sum(len(batch.updates) for batch in batches)
        if self.runner is None or total < self.min_updates or len(batches) < 2:
            self.counters["local"] += len(batches)
            return {batch.address: storage_root_here(store, batch) for batch in batches}
        local_share = self.share_here and _forks_nothing(self.runner)
        groups = spread(batches, self.workers + (1 if local_share else 0))
        here = groups.pop() if local_share and len(groups) > 1 else []
        tasks = [StorageRootTask(tuple(group)) for group in groups]
        results: dict[bytes, TrieUpdate] = {}
        if here:
            with ThreadPoolExecutor(1, thread_name_prefix="khipu-roots") as waiter:
                remote = waiter.submit(self._remote, tasks)
                for batch in here:
                    results[batch.address] = storage_root_here(store, batch)
                answers = remote.result()
        else:
            answers = self._remote(tasks)
        self.counters["local"] += len(here)
        for group, answer in zip(groups, answers, strict=True):
            if answer is None or len(answer) != len(group):
                self.counters["local"] += len(group)
                results.update((b.address, storage_root_here(store, b)) for b in group)
                continue
            for batch, root in zip(group, answer, strict=True):
                if root.root_hash is None or not _plausible(batch, root):
                    self.counters["missing" if root.root_hash is None else "rejected"] += 1
                    results[batch.address] = storage_root_here(store, batch)
                else:
                    self.counters["remote"] += 1
                    results[batch.address] = TrieUpdate(Hash32(root.root_hash), root.nodes)
        return results

    def _remote(self, tasks: list[StorageRootTask]) -> list[list[StorageRoot] | None]:
        """The workers' answers in order; None for every task if the runner failed."""
        assert self.runner is not None
        started = time.perf_counter()
        try:
            answers: list[list[StorageRoot] | None] = list(self.runner.map(tasks))
        except Exception as error:  # any failure of the pool: the merge computes them
            self.counters["fallbacks"] += 1
            log.warning("storage roots on the workers failed (%s: %s); computing them here",
                        type(error).__name__, error)  # fmt: skip
            return [None] * len(tasks)
        self.counters["tasks"] += len(tasks)
        log.debug("storage roots: %d tasks in %.1f ms", len(tasks),
                  (time.perf_counter() - started) * 1000)  # fmt: skip
        return answers


def _plausible(batch: StorageBatch, root: StorageRoot) -> bool:
    """A cheap check of a worker's answer: for the right account, and its new root is the
    parent's, the blank root, or the hash of one of the nodes it returned (one keccak; every
    node is not re-hashed, that would cost as much as computing them here)."""
    if root.address != batch.address or root.root_hash is None:
        return False
    if root.root_hash in (batch.parent_root, BLANK_ROOT):
        return True
    encoded = root.nodes.get(root.root_hash)
    return encoded is not None and keccak(encoded) == root.root_hash


def _forks_nothing(runner: Any) -> bool:
    from khipu.execution.executor import _forks_nothing as forks_nothing

    return forks_nothing(runner)
