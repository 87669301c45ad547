"""Importer: feeds the blocks of block files to the StorageWriter, in order, one at a time."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
from eth.abc import BlockAPI

from khipu.actors import ActorUnavailable, ChildContext, ChildState, SupervisedActor
from khipu.actors.children import ActorChild, ChildSlot
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
from khipu.node_actors.progress import ImportRates, ImportStatus, RateWindow
from khipu.node_actors.storage_writer import BlockRejected

log = logging.getLogger("khipu.importer")

# Errors of the block files themselves: importing them again would fail the same way.
FILE_ERRORS = (MalformedBlock, MalformedBlockFile, UnsupportedBlockFile, OSError)


@dataclass(frozen=True)
class PendingAsk:
    """A request in flight to one incarnation of the StorageWriter."""

    message: ImportBlock | GetHead
    future: pykka.Future[Any]
    incarnation: int


class _Waiting:
    """The writer has not answered yet."""


class _Lost:
    """The writer incarnation holding the request died or was replaced: resume from its head."""


WAITING, LOST = _Waiting(), _Lost()


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
        self._pending: PendingAsk | None = None
        self._done = False
        self._rates = RateWindow()
        self._started = time.monotonic()
        self._imported = 0
        self._last_progress = self._started

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
        if self._pending is not None:
            reply = self._collect(self._pending)
            if reply is WAITING:
                self._again()
                return
            self._pending = None
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
            self._again(0.0 if self._ask_writer(GetHead()) else self.retry_delay)
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
        if self._ask_writer(ImportBlock(block, source)):
            self._again()
        else:
            self._blocks = None  # the writer is restarting: this block is sent again later
            self._again(self.retry_delay)

    def _collect(self, pending: PendingAsk) -> object:
        """The writer's reply, WAITING, LOST, or the BlockRejected it raised."""
        try:
            reply: object = pending.future.get(timeout=self.poll)
        except pykka.Timeout:
            slot = self._writer_slot()
            replaced = (
                slot.incarnation != pending.incarnation or slot.state is not ChildState.RUNNING
            )
            if replaced:
                log.warning("%s was replaced while holding %s", slot.path, _describe(pending))
                return LOST
            return WAITING
        except BlockRejected as rejected:
            return rejected
        except Exception as error:
            log.warning(
                "%s failed on %s (%r); resuming after its stored head",
                self.writer_path,
                _describe(pending),
                error,
            )
            return LOST
        return reply

    def _ask_writer(self, message: ImportBlock | GetHead) -> bool:
        """Send `message` to the running writer without waiting; False while it restarts."""
        try:
            runtime, incarnation = self._writer_slot().current(timeout=0)
        except ActorUnavailable:
            return False
        if not isinstance(runtime, ActorChild):
            raise TypeError(f"{self.writer_path} is a {runtime.kind}, not an actor")
        if not runtime.is_alive():
            return False  # dead, and its supervisor has not yet heard of it
        try:
            future: pykka.Future[Any] = runtime.ref.ask(message, block=False)
        except pykka.ActorDeadError:
            return False
        self._pending = PendingAsk(message, future, incarnation)
        return True

    def _writer_slot(self) -> ChildSlot:
        assert self.context is not None
        return self.context.root.find(self.writer_path)

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
        if imported.already_known:
            return
        self._imported += 1
        self._rates.add(imported.transactions, imported.gas_used)
        rates = self._rates.rates()
        self.status.update(rates=rates)
        if self.metrics is not None:
            self.metrics.import_rate.set(rates.blocks_per_s)
            self.metrics.gas_rate.set(rates.mgas_per_s * 1e6)
        now = time.monotonic()
        if now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            self._log_progress(imported.number, "import progress")

    def _log_progress(self, head: int, message: str) -> None:
        snapshot = self.status.snapshot()
        event(
            log,
            message,
            head=head,
            target=snapshot["target"],
            blocks_per_s=snapshot["blocks_per_s"],
            tx_per_s=snapshot["tx_per_s"],
            mgas_per_s=snapshot["mgas_per_s"],
        )

    def _finish(self) -> None:
        self._done = True
        snapshot = self.status.snapshot()
        self.status.update(state="done", rates=ImportRates(0.0, 0.0, 0.0))
        if self.metrics is not None:
            self.metrics.import_rate.set(0)
            self.metrics.gas_rate.set(0)
        event(
            log,
            "import finished",
            head=snapshot["head"],
            imported=self._imported,
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


def _describe(pending: PendingAsk) -> str:
    message = pending.message
    if isinstance(message, ImportBlock):
        return f"block #{message.block.header.block_number} of {message.source}"
    return "a head request"
