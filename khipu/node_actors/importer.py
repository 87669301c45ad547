"""Importer: feeds the blocks of block files to the StorageWriter, in order, one at a time."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pykka
from eth.abc import BlockAPI

from khipu.actors import ChildContext, SupervisedActor
from khipu.actors.metrics import NodeMetrics
from khipu.actors.timers import ActorTimers
from khipu.chain.block_files import MalformedBlockFile
from khipu.chain.import_job import UnsupportedBlockFile, count_blocks, iter_file_blocks
from khipu.chain.importer import MalformedBlock
from khipu.chain.rules import ChainRules
from khipu.logs import event
from khipu.node_actors.faults import FaultPlan
from khipu.node_actors.messages import (
    BlockImported,
    ContinueImport,
    GetHead,
    ImportBlock,
    StoredHead,
)
from khipu.node_actors.progress import ImportStatus, ProgressReporter
from khipu.node_actors.storage_writer import BlockRejected
from khipu.node_actors.writer_link import WAITING, WriterLink

log = logging.getLogger("khipu.importer")

# Errors of the block files themselves: importing them again would fail the same way.
FILE_ERRORS = (MalformedBlock, MalformedBlockFile, UnsupportedBlockFile, OSError)


class Importer(SupervisedActor):
    """Imports `files` through the StorageWriter at `writer_path`, resuming after its head.

    The import is a chain of small steps (`ContinueImport` told to itself), so the Importer
    answers heartbeats while the writer executes a block. At most one request is in flight. When
    the writer fails or is replaced while holding a block, the Importer asks the new incarnation
    for the stored head and goes on from the block after it; a restarted Importer does the same,
    so nothing depends on what a dead incarnation remembered. An invalid block or an unreadable
    file ends the import (state `failed`, the error logged); the node keeps running.
    """

    def __init__(
        self,
        context: ChildContext | None,
        files: Sequence[Path],
        rules: ChainRules,
        *,
        writer_path: str = "StorageWriter",
        status: ImportStatus | None = None,
        metrics: NodeMetrics | None = None,
        faults: FaultPlan | None = None,
        progress_interval: float = 10.0,
        poll: float = 0.05,
        retry_delay: float = 0.2,
    ) -> None:
        super().__init__(context)
        if context is None:
            raise ValueError("the Importer finds the StorageWriter through its supervision tree")
        self.files = [Path(path) for path in files]
        self.rules = rules
        self.writer_path = writer_path
        self.status = status if status is not None else ImportStatus()
        self.metrics = metrics
        self.faults = faults if faults is not None else FaultPlan()
        self.progress_interval = progress_interval
        self.poll = poll
        self.retry_delay = retry_delay
        self._timers = ActorTimers(self.actor_ref)
        self._blocks: Iterator[tuple[BlockAPI, str]] | None = None
        self._writer = WriterLink.in_tree(context, writer_path, poll)
        self._done = False
        self._progress = ProgressReporter(
            self.status, log, "import progress", progress_interval, metrics
        )
        self._started = time.monotonic()

    # -- life cycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        if not self.files:
            self._done = True
            self.status.update(state="idle")
            return
        try:
            target = self._target()
        except FILE_ERRORS as error:
            self._fail(f"cannot read the block files: {error}")
            return
        self.status.update(state="importing", target=target, error=None)
        event(
            log,
            "import starting",
            files=",".join(str(path) for path in self.files),
            target=target,
            incarnation=self.incarnation,
        )
        self.actor_ref.tell(ContinueImport())

    def on_stop(self) -> None:
        self._timers.cancel_all()

    def on_failure(self, *_exc_info: Any) -> None:
        self._timers.cancel_all()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ContinueImport):
            self.step()
            return None
        return super().on_receive(message)

    # -- the import ----------------------------------------------------------------------------

    def step(self) -> None:
        """Collect the writer's answer if it is there, then send the next request."""
        if self._done:
            return
        if self._writer.pending is not None:
            reply = self._writer.collect()
            if reply is WAITING:
                self._again()
                return
            if isinstance(reply, StoredHead):
                self._resume_after(reply)
            elif isinstance(reply, BlockImported):
                self._record(reply)
            elif isinstance(reply, BlockRejected):
                self._fail(str(reply))
                return
            else:
                # Lost with a writer incarnation: resume from the stored head once it is back.
                self._blocks = None
                self._again(self.retry_delay)
                return
        if self._blocks is None:
            self._again(0.0 if self._writer.ask(GetHead()) else self.retry_delay)
            return
        self.faults.check("Importer.next_block")
        try:
            item = next(self._blocks, None)
        except FILE_ERRORS as error:
            self._fail(str(error))
            return
        if item is None:
            self._finish()
            return
        block, source = item
        if self._writer.ask(ImportBlock(block, source)):
            self._again()
        else:
            self._blocks = None  # the writer is restarting: this block is sent again later
            self._again(self.retry_delay)

    def _resume_after(self, head: StoredHead) -> None:
        self.status.update(head=head.number)
        event(log, "import resuming", after=head.number, incarnation=self.incarnation)
        self._blocks = self._blocks_after(head.number)

    def _blocks_after(self, head: int) -> Iterator[tuple[BlockAPI, str]]:
        for path in self.files:
            for block in iter_file_blocks(path, self.rules):
                if block.header.block_number > head:
                    yield block, str(path)

    def _target(self) -> int | None:
        """The number of the last block of the files (they hold consecutive blocks)."""
        first = next(iter_file_blocks(self.files[0], self.rules), None)
        if first is None:
            return None
        return first.header.block_number + count_blocks(self.files) - 1

    # -- progress ------------------------------------------------------------------------------

    def _record(self, imported: BlockImported) -> None:
        if not imported.already_known:
            self._progress.record(imported.number, imported.transactions, imported.gas_used)

    def _finish(self) -> None:
        self._done = True
        head = self.status.snapshot()["head"]
        self.status.update(state="done")
        self._progress.idle()
        event(
            log,
            "import finished",
            head=head,
            imported=self._progress.counted,
            seconds=round(time.monotonic() - self._started, 2),
            incarnation=self.incarnation,
        )

    def _fail(self, reason: str) -> None:
        self._done = True
        self.status.update(state="failed", error=reason)
        log.error("import stopped: %s", reason, extra={"fields": {"reason": reason}})

    def _again(self, delay: float = 0.0) -> None:
        if delay <= 0:
            # An incarnation abandoned by its supervisor takes no more messages: nothing to do.
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor_ref.tell(ContinueImport())
        else:
            self._timers.once(delay, ContinueImport())
