"""WriterLink: how a block source (the Importer, RegularSync) talks to the StorageWriter.

One request in flight at a time, sent without waiting and collected on a later step, so the asking
actor keeps answering heartbeats while the writer executes a block. A request held by a writer
incarnation that died or was replaced is reported LOST: the asker then asks the new incarnation for
the stored head and goes on after it, so nothing depends on what a dead incarnation remembered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from khipu.actors import ActorUnavailable, ChildContext, ChildState
from khipu.actors.children import ActorChild, ChildSlot
from khipu.node_actors.messages import GetHead, ImportBlock
from khipu.node_actors.storage_writer import BlockRejected

log = logging.getLogger("khipu.writer_link")


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


class WriterLink:
    """Asks the StorageWriter found by `find_slot()` (its slot in the supervision tree)."""

    def __init__(self, find_slot: Callable[[], ChildSlot], poll: float = 0.05) -> None:
        self.find_slot = find_slot
        self.poll = poll
        self.pending: PendingAsk | None = None

    @classmethod
    def in_tree(cls, context: ChildContext, writer_path: str, poll: float = 0.05) -> WriterLink:
        """The link to the writer at `writer_path` below the root of `context`'s tree."""
        return cls(lambda: context.root.find(writer_path), poll)

    def ask(self, message: ImportBlock | GetHead) -> bool:
        """Send `message` to the running writer without waiting; False while it restarts."""
        try:
            runtime, incarnation = self.find_slot().current(timeout=0)
        except ActorUnavailable:
            return False
        if not isinstance(runtime, ActorChild):
            raise TypeError(f"the StorageWriter is a {runtime.kind}, not an actor")
        if not runtime.is_alive():
            return False  # dead, and its supervisor has not yet heard of it
        try:
            future: pykka.Future[Any] = runtime.ref.ask(message, block=False)
        except pykka.ActorDeadError:
            return False
        self.pending = PendingAsk(message, future, incarnation)
        return True

    def collect(self) -> object:
        """The pending request's reply, WAITING, LOST, or the BlockRejected it raised; the
        request is no longer pending unless WAITING."""
        pending = self.pending
        assert pending is not None, "nothing was asked"
        try:
            reply: object = pending.future.get(timeout=self.poll)
        except pykka.Timeout:
            slot = self.find_slot()
            replaced = (
                slot.incarnation != pending.incarnation or slot.state is not ChildState.RUNNING
            )
            if not replaced:
                return WAITING
            log.warning("%s was replaced while holding %s", slot.path, describe(pending))
            reply = LOST
        except BlockRejected as rejected:
            reply = rejected
        except Exception as error:
            log.warning(
                "the StorageWriter failed on %s (%r); resuming after its stored head",
                describe(pending),
                error,
            )
            reply = LOST
        self.pending = None
        return reply


def describe(pending: PendingAsk) -> str:
    """'block #N of SOURCE' or 'a head request', for log lines."""
    message = pending.message
    if isinstance(message, ImportBlock):
        return f"block #{message.block.header.block_number} of {message.source}"
    return "a head request"
