"""What a worker does with a task: speculate transactions, update storage tries, or recover
senders.

A pool's handler receives three kinds of task: `SpeculationTask` (run transactions on the parent
state, executor.speculate), `StorageRootTask` (apply a block's final storage writes to the
parent storage tries, storage_roots.compute_storage_roots) and `SenderTask` (recover the senders
of a block ahead of its execution, senders.recover_senders). `run_task` dispatches on the kind;
`DatadirWorker` is the handler of a pool over a datadir (the node's and `khipu import`'s).
"""

from __future__ import annotations

from typing import Any

from khipu.chain.chain import KhipuChain
from khipu.execution.executor import DatadirSpeculator, SpeculationTask, TxOutcome, speculate
from khipu.execution.senders import SenderTask, recover_senders
from khipu.execution.storage_roots import StorageRoot, StorageRootTask, compute_storage_roots

TaskResult = list[TxOutcome] | list[StorageRoot] | list[bytes | None]


def run_task(chain: KhipuChain, task: SpeculationTask | StorageRootTask | SenderTask) -> TaskResult:
    """The result of `task` on the parent state `chain` reads. Raises TypeError for a task of
    another kind; a speculation raises what `speculate` raises."""
    if isinstance(task, StorageRootTask):
        return compute_storage_roots(chain.chaindb.db, task)
    if isinstance(task, SenderTask):
        return recover_senders(chain.rules, task)
    if isinstance(task, SpeculationTask):
        return speculate(chain, task)
    raise TypeError(f"a worker cannot run a {type(task).__name__}")


class DatadirWorker(DatadirSpeculator):
    """A DatadirSpeculator that also computes storage roots from the datadir's tries (the
    same read-only store, which follows the writer's commits) and recovers senders."""

    def __call__(self, task: Any) -> Any:
        if isinstance(task, StorageRootTask):
            return run_task(self.chain(), task)
        if isinstance(task, SenderTask):  # needs no store
            return recover_senders(self.rules, task)
        return super().__call__(task)

    def chain(self) -> KhipuChain:
        """The chain over the datadir, opened read-only on first use."""
        if self._chain is None:
            from khipu.chain.chain import open_chain
            from khipu.storage.chain_store import ChainStore

            store = ChainStore.open_readonly(self.datadir)
            self._chain = open_chain(self.rules, store.db)
        return self._chain
