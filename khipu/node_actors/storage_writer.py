"""StorageWriter: the only writer of the chain store; commits one verified block at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from khipu.actors import ActorHandle, ChildContext, RequestRejected, SupervisedActor
from khipu.actors.metrics import NodeMetrics
from khipu.chain.chain import open_chain
from khipu.chain.importer import BlockImporter, InvalidBlock
from khipu.chain.rules import ChainRules
from khipu.config import ChainSelection
from khipu.execution.block_executor import ParallelBlockExecutor
from khipu.logs import event
from khipu.node_actors.execution import ExecutionClient, ExecutionSettings
from khipu.node_actors.faults import FaultPlan
from khipu.node_actors.messages import BlockImported, GetHead, ImportBlock, StoredHead
from khipu.node_actors.progress import ImportStatus
from khipu.storage.chain_store import ChainStore
from khipu.storage.leveldb import StoreLocked

log = logging.getLogger("khipu.storage_writer")

# How often a fresh incarnation tries again to open a store still held by its predecessor (a
# stalled incarnation keeps it until its handler returns).
_REOPEN_POLL = 0.1


class BlockRejected(RequestRejected):
    """The StorageWriter refused a block because it is invalid; the store is unchanged and the
    writer goes on. `invalid` carries the block number, hash and the check that failed."""

    def __init__(self, source: str, invalid: InvalidBlock) -> None:
        super().__init__(f"{source}: {invalid}")
        self.source = source
        self.invalid = invalid


class StorageWriter(SupervisedActor):
    """Owns the open ChainStore. Answers `ImportBlock` with `BlockImported` once the block is
    verified, executed and durable, and `GetHead` with the committed `StoredHead`.

    Every incarnation opens the store itself and learns the head from it, so a restarted writer
    resumes exactly where the last complete commit left the store. With `execution` settings,
    blocks are executed by a ParallelBlockExecutor whose speculation runs on the sibling
    ExecutionSupervisor (`execution_path` below the root) and whose merge runs here. An invalid
    block raises `BlockRejected` to the asker only; any other error fails this incarnation (the
    store is closed before the supervisor hears of it, so the next incarnation can reopen it).
    """

    def __init__(
        self,
        context: ChildContext | None,
        selection: ChainSelection,
        *,
        check_seal: bool = True,
        execution: ExecutionSettings | None = None,
        execution_path: str = "ExecutionSupervisor",
        status: ImportStatus | None = None,
        metrics: NodeMetrics | None = None,
        faults: FaultPlan | None = None,
        open_timeout: float = 30.0,
        publish: Callable[[ChainStore | None], None] | None = None,
    ) -> None:
        super().__init__(context)
        self.publish = publish
        self.selection = selection
        self.check_seal = check_seal
        self.execution = execution
        self.execution_path = execution_path
        self.status = status if status is not None else ImportStatus()
        self.metrics = metrics
        self.faults = faults if faults is not None else FaultPlan()
        self.open_timeout = open_timeout
        self.store: ChainStore | None = None
        self.block_importer: BlockImporter | None = None
        self.executor: ParallelBlockExecutor | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        self.faults.check("StorageWriter.start")
        self.store = self._open_store()
        rules = ChainRules(self.selection.genesis.config)
        chain = open_chain(rules, self.store.db)
        if self.execution is not None:
            self.executor = self._parallel_executor(chain, self.execution)
        self.block_importer = BlockImporter(
            chain, check_seal=self.check_seal, executor=self.executor
        )
        head = self.store.head()
        if self.publish is not None:
            self.publish(self.store)
        self.status.update(head=head.block_number)
        if self.metrics is not None:
            self.metrics.head_block.set(head.block_number)
        event(
            log,
            "storage writer ready",
            head=head.block_number,
            hash="0x" + head.hash.hex(),
            incarnation=self.incarnation,
        )

    def _parallel_executor(self, chain: Any, settings: ExecutionSettings) -> ParallelBlockExecutor:
        if self.context is None:
            raise RuntimeError("parallel execution needs the ExecutionSupervisor of a tree")
        handle = ActorHandle(self.context.root, self.execution_path, timeout=60.0)
        return ParallelBlockExecutor(
            chain,
            ExecutionClient(handle),
            workers=settings.workers,
            metrics=self.metrics,
            always_parallel=settings.always_parallel,
        )

    def on_stop(self) -> None:
        self._close_store()

    def _actor_loop_teardown(self) -> None:
        # Every way out (stop, failure, abandonment after a stall) closes the store before the
        # supervisor is told, so that the next incarnation can open it.
        self._close_store()
        super()._actor_loop_teardown()

    def _open_store(self) -> ChainStore:
        """Open the datadir, waiting while an earlier incarnation of this process still holds it.

        Raises StoreLocked after `open_timeout`, GenesisMismatch for a datadir of another chain.
        """
        deadline = time.monotonic() + self.open_timeout
        selection = self.selection
        while True:
            try:
                return ChainStore.open(
                    selection.datadir,
                    selection.genesis,
                    selection.genesis_json,
                    config=selection.storage,
                )
            except StoreLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_REOPEN_POLL)

    def _close_store(self) -> None:
        store, self.store, self.block_importer = self.store, None, None
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.close()  # before the store: workers read it
            event(log, "parallel execution stopped", blocks=executor.summary())
        if self.publish is not None:
            self.publish(None)
        if store is not None:
            store.close()
            log.debug("%s closed the store", self.actor_path)

    # -- messages ------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ImportBlock):
            return self.import_block(message)
        if isinstance(message, GetHead):
            return self.stored_head()
        return super().on_receive(message)

    def import_block(self, message: ImportBlock) -> BlockImported:
        """Verify, execute and durably commit one block. Raises BlockRejected if it is invalid."""
        assert self.store is not None and self.block_importer is not None, "not started"
        self.faults.check("StorageWriter.import_block")
        try:
            result = self.block_importer.import_block(message.block)
        except InvalidBlock as invalid:
            raise BlockRejected(message.source, invalid) from invalid
        # Durable already: the store commits each block to Kesque as it persists it (LevelDB's
        # index write may lag after a power cut; reopening re-imports what it lacks).
        header = result.header
        if not result.already_known:
            self.status.record_commit(header.block_number)
            if self.metrics is not None:
                self.metrics.blocks_imported.inc()
                self.metrics.transactions_imported.inc(result.transactions)
                self.metrics.gas_used.inc(result.gas_used)
                self.metrics.head_block.set(header.block_number)
        return BlockImported(
            number=header.block_number,
            block_hash=header.hash,
            state_root=header.state_root,
            transactions=result.transactions,
            gas_used=result.gas_used,
            already_known=result.already_known,
        )

    def stored_head(self) -> StoredHead:
        """The committed head of the store."""
        assert self.store is not None, "not started"
        head = self.store.head()
        return StoredHead(head.block_number, head.hash, head.state_root)
