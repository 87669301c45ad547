"""What a supervisor keeps per child: the running incarnation behind a small interface, and a
thread-safe slot that handles and the HealthMonitor read without messaging the supervisor."""

from __future__ import annotations

import abc
import enum
import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pykka
from pykka import messages as pykka_messages

from khipu.actors.errors import ActorUnavailable
from khipu.actors.strategy import ChildSpec, Decider

logger = logging.getLogger("khipu.actors")

_slot_uids = itertools.count(1)


class ChildState(enum.Enum):
    """A child's state as the HealthMonitor reports it."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STALLED = "stalled"
    STOPPED = "stopped"


class ChildRuntime(abc.ABC):
    """One running incarnation of a child: an actor thread or a worker process."""

    kind: str = "child"

    @abc.abstractmethod
    def is_alive(self) -> bool:
        """True while the incarnation can still take work."""

    @abc.abstractmethod
    def stop(self, timeout: float) -> bool:
        """Stop gracefully, waiting at most `timeout` seconds; False if it had to be abandoned."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Mark the incarnation dead at once, without waiting (it is stuck or being replaced)."""

    def mailbox_depth(self) -> int | None:
        """Messages waiting to be processed, or None where there is no mailbox."""
        return None

    def pid(self) -> int | None:
        """The operating-system process id for a process child, else None."""
        return None

    def activity(self) -> str | None:
        """What a worker is doing now ("busy", "idle", ...), for kinds that say; else None."""
        return None

    def processed(self) -> int | None:
        """Tasks done, for kinds that count them without a heartbeat; else None."""
        return None

    def heartbeat(self, message: Any) -> pykka.Future[Any] | None:
        """Send a heartbeat and return the future of its answer, or None if this kind has none."""
        return None

    def deliver(self, message: Any) -> bool:
        """Tell a message re-sent from a dead incarnation; False where this kind takes none."""
        return False

    def drain(self, ask_error: BaseException) -> list[Any]:
        """Empty the mailbox of a dead incarnation: fail waiting asks with `ask_error` and return
        the tells, so nothing sent to it is dropped silently."""
        return []


class ActorChild(ChildRuntime):
    """A Pykka actor incarnation, known by its ref."""

    kind = "actor"

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self.ref = ref

    def is_alive(self) -> bool:
        return self.ref.is_alive()

    def stop(self, timeout: float) -> bool:
        try:
            self.ref.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            logger.warning("%s did not stop within %gs; abandoning it", self.ref, timeout)
            self.abandon()
            return False
        return True

    def abandon(self) -> None:
        # The thread may be stuck in a handler: setting the stop flag makes its ref refuse new
        # messages and ends its loop as soon as the handler returns.
        self.ref.actor_stopped.set()
        pykka.ActorRegistry.unregister(self.ref)

    def mailbox_depth(self) -> int | None:
        qsize = getattr(self.ref.actor_inbox, "qsize", None)
        return int(qsize()) if qsize is not None else None

    def heartbeat(self, message: Any) -> pykka.Future[Any] | None:
        if not hasattr(self.ref.actor_class, "health_report"):
            return None  # a plain Pykka actor would log every heartbeat as unexpected
        future: pykka.Future[Any] = self.ref.ask(message, block=False)
        return future

    def deliver(self, message: Any) -> bool:
        try:
            self.ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def drain(self, ask_error: BaseException) -> list[Any]:
        return drain_inbox(self.ref.actor_inbox, ask_error)


def drain_inbox(inbox: Any, ask_error: BaseException) -> list[Any]:
    """Take every envelope out of a Pykka inbox: asks fail with `ask_error`, tells are returned.

    Pykka's own (private) stop message is answered as done: a stopped actor is what it asked for.
    """
    tells: list[Any] = []
    while True:
        try:
            envelope = inbox.get_nowait() if hasattr(inbox, "get_nowait") else None
        except queue.Empty:
            break
        if envelope is None:
            break
        message, reply_to = envelope.message, envelope.reply_to
        if isinstance(message, pykka_messages._ActorStop):
            if reply_to is not None:
                reply_to.set(None)
            continue
        if reply_to is None:
            tells.append(message)
            continue
        try:
            raise ask_error
        except BaseException:
            reply_to.set_exception(sys.exc_info())
    return tells


@dataclass(frozen=True)
class ChildContext:
    """Given to a child's factory: who the child is, and how it reports to its supervisor."""

    name: str
    path: str
    incarnation: int
    decider: Decider
    parent: pykka.ActorRef[Any] | None
    slot: ChildSlot
    root: ChildTable
    listeners: tuple[Callable[[Any], None], ...] = ()

    def report(self, message: Any) -> None:
        """Tell the supervisor; a supervisor already gone is not an error (it is stopping too)."""
        if self.parent is None:
            return
        try:
            self.parent.tell(message)
        except pykka.ActorDeadError:
            logger.debug("%s: supervisor gone, report %r not delivered", self.path, message)


class ChildSlot:
    """The thread-safe record of one child across its incarnations.

    Written by the supervisor only; read by `ActorHandle`s (who wait here while the child
    restarts) and by the HealthMonitor.
    """

    def __init__(
        self, spec: ChildSpec, parent_path: str, owner: pykka.ActorRef[Any] | None = None
    ) -> None:
        self.spec = spec
        self.uid = next(_slot_uids)  # tells this slot from a later one of the same name
        self.owner = owner  # the supervisor of this child
        self.name = spec.name
        self.path = f"{parent_path}/{spec.name}"
        self._changed = threading.Condition()
        self.state = ChildState.STARTING
        self.incarnation = 0
        self.runtime: ChildRuntime | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.stopped_reason: str | None = None
        self.subtree: ChildTable | None = None
        self.closing = False
        self.replaced = False

    def set_running(self, runtime: ChildRuntime, incarnation: int) -> None:
        """Publish a freshly started incarnation and wake callers waiting for it."""
        with self._changed:
            self.runtime, self.incarnation, self.state = runtime, incarnation, ChildState.RUNNING
            self._changed.notify_all()

    def set_state(self, state: ChildState, reason: str | None = None) -> None:
        """Move to `state`; STOPPED wakes waiting callers so they fail instead of waiting."""
        with self._changed:
            self.state = state
            if state is ChildState.STOPPED:
                self.stopped_reason = reason
            self._changed.notify_all()

    def record_error(self, error: BaseException | None, at: float) -> None:
        """Remember the last error shown in health lines."""
        with self._changed:
            text = "normal exit" if error is None else f"{type(error).__name__}: {error}"
            self.last_error, self.last_error_at = text, at

    def mark_replaced(self) -> None:
        """This slot's supervisor gave up: a restarted supervisor will hold a new slot."""
        with self._changed:
            self.replaced = True
            self._changed.notify_all()

    def close(self) -> None:
        """Refuse new work through handles (the tree is shutting down)."""
        with self._changed:
            self.closing = True
            self._changed.notify_all()

    def current(self, timeout: float | None) -> tuple[ChildRuntime, int]:
        """The running incarnation, waiting up to `timeout` while the child (re)starts.

        Raises ActorUnavailable when the child is stopped for good, the tree is shutting down, or
        no incarnation is running by the deadline.
        """
        return self.running_after(0, timeout)

    def running_after(self, incarnation: int, timeout: float | None) -> tuple[ChildRuntime, int]:
        """A running incarnation newer than `incarnation`, waiting up to `timeout` for it.

        Raises ActorUnavailable as `current` does.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                if self.closing:
                    raise ActorUnavailable(self.path, "the node is shutting down")
                if self.replaced:
                    raise ActorUnavailable(self.path, "its supervisor is restarting")
                if self.state is ChildState.STOPPED:
                    raise ActorUnavailable(self.path, f"stopped ({self.stopped_reason})")
                runtime = self.runtime
                if (
                    self.state is ChildState.RUNNING
                    and runtime is not None
                    and self.incarnation > incarnation
                ):
                    return runtime, self.incarnation
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ActorUnavailable(
                        self.path, f"no running incarnation by the deadline ({self.state.value})"
                    )
                self._changed.wait(remaining)


class ChildTable:
    """A supervisor's children in start order; a nested supervisor hangs its table off a slot."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.slots: list[ChildSlot] = []

    def slot(self, name: str) -> ChildSlot:
        """The slot of the child called `name`; KeyError names the supervisor if there is none."""
        for slot in list(self.slots):  # the supervisor may add or remove meanwhile
            if slot.name == name:
                return slot
        raise KeyError(f"{self.path} has no child {name!r}")

    def find(self, path: str) -> ChildSlot:
        """The slot at a path relative to this table, e.g. 'SyncSupervisor/FastSync'."""
        first, _, rest = path.partition("/")
        slot = self.slot(first)
        if not rest:
            return slot
        if slot.subtree is None:
            raise KeyError(f"{slot.path} is not a supervisor")
        return slot.subtree.find(rest)

    def walk(self) -> Iterator[ChildSlot]:
        """Every slot of the subtree, depth first in start order."""
        for slot in list(self.slots):
            yield slot
            if slot.subtree is not None:
                yield from slot.subtree.walk()
