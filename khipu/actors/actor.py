"""SupervisedActor: a Pykka ThreadingActor that reports its failures and death to its supervisor.

Pykka (4.5.0, pinned) lets an exception in an `ask` go back to the caller and keeps the actor,
kills the actor silently on an exception in a `tell`, and fails pending asks with a bare
`ActorDeadError`. This class replaces Pykka's loop hooks so that every failure goes through the
supervisor's decider, every death is reported, and nothing in the mailbox is dropped silently.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pykka

from khipu.actors.children import ChildContext, drain_inbox
from khipu.actors.errors import ActorRestarted, ActorUnavailable, RequestRejected
from khipu.actors.messages import ChildFailed, HealthReport, Heartbeat
from khipu.actors.strategy import Directive

logger = logging.getLogger("khipu.actors")


class SupervisedActor(pykka.ThreadingActor):
    """Base class of the node's actors.

    Subclasses take the `ChildContext` their factory received as the first constructor argument
    and pass it on: `super().__init__(context)`. Without a context (an actor started on its own)
    the actor behaves like a plain Pykka actor.

    An exception raised while handling a message goes to the asker (if any) and to the decider:
    RESUME keeps the actor and its state; any other directive ends this incarnation, fails the
    asks still waiting in its mailbox with `ActorRestarted` (or `ActorUnavailable`), and tells the
    supervisor with a `ChildFailed` that also carries the tells left in the mailbox. A
    `RequestRejected` is no failure: it only goes back to the asker.

    Hooks of Pykka's loop (`_actor_loop_setup`, `_actor_loop_running`, `_actor_loop_teardown`,
    `_handle_receive`) are overridden: they are private to Pykka, which is pinned to 4.5.0 for it.
    """

    # An actor stuck in a handler must not keep the process alive after the tree has stopped.
    use_daemon_thread = True

    def __init__(self, context: ChildContext | None = None) -> None:
        super().__init__()
        self.context = context
        self.processed = 0
        self._failure: BaseException | None = None
        self._directive: Directive | None = None

    @property
    def actor_path(self) -> str:
        """Where the actor sits in the tree, e.g. 'NodeSupervisor/StorageWriter'."""
        return self.context.path if self.context is not None else type(self).__name__

    @property
    def incarnation(self) -> int:
        """1 for the first start, incremented by each restart (0 outside a tree)."""
        return self.context.incarnation if self.context is not None else 0

    # -- Pykka loop hooks ----------------------------------------------------------------------

    def _actor_loop_setup(self) -> None:
        try:
            self.on_start()
        except Exception as error:
            logger.error("%s failed to start", self.actor_path, exc_info=True)
            self._end_incarnation(error, self._decide(error, Directive.STOP))

    def _actor_loop_running(self) -> None:
        while not self.actor_stopped.is_set():
            envelope = self.actor_inbox.get()
            try:
                response = self._handle_receive(envelope.message)
            except BaseException as error:
                exc_info = sys.exc_info()
                # End the incarnation before answering, so that a caller who reacts to the error
                # at once already finds the actor dead and waits for its successor.
                self._handler_failed(error, asked=envelope.reply_to is not None)
                if envelope.reply_to is not None:
                    envelope.reply_to.set_exception(exc_info)
            else:
                if envelope.reply_to is not None:
                    envelope.reply_to.set(response)

    def _actor_loop_teardown(self) -> None:
        directive = self._directive
        if directive is Directive.RESTART:
            ask_error: BaseException = ActorRestarted(self.actor_path, self.incarnation)
        else:
            reason = "stopped" if self._failure is None else f"failed ({self._failure!r})"
            ask_error = ActorUnavailable(self.actor_path, reason)
        undelivered = drain_inbox(self.actor_inbox, ask_error)
        if undelivered and self.context is None:
            dropped = len(undelivered)
            logger.warning("%s dropped %d told message(s) on stop", self.actor_path, dropped)
        if self.context is not None:
            self.context.report(
                ChildFailed(
                    name=self.context.name,
                    incarnation=self.context.incarnation,
                    error=self._failure,
                    directive=directive,
                    undelivered=tuple(undelivered),
                    slot_uid=self.context.slot.uid,
                )
            )

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, Heartbeat):
            return self.health_report(message.sequence)
        result = super()._handle_receive(message)
        self.processed += 1
        return result

    # -- failure handling ----------------------------------------------------------------------

    def health_report(self, sequence: int) -> HealthReport:
        """This actor's answer to a heartbeat."""
        qsize = getattr(self.actor_inbox, "qsize", None)
        return HealthReport(
            actor=self.actor_path,
            incarnation=self.incarnation,
            processed=self.processed,
            mailbox=int(qsize()) if qsize is not None else 0,
            sequence=sequence,
        )

    def _decide(self, error: BaseException, outside_tree: Directive) -> Directive:
        if not isinstance(error, Exception):
            return Directive.ESCALATE  # KeyboardInterrupt, SystemExit: not ours to resume
        if self.context is None:
            return outside_tree
        return self.context.decider(error)

    def _handler_failed(self, error: BaseException, asked: bool) -> None:
        if isinstance(error, RequestRejected):
            logger.debug("%s rejected a request: %s", self.actor_path, error)
            return
        # Outside a tree keep Pykka's behaviour: an asker gets the error, a tell kills the actor.
        directive = self._decide(error, Directive.RESUME if asked else Directive.STOP)
        if directive is Directive.RESUME:
            logger.warning("%s resumed after %r", self.actor_path, error)
            self.processed += 1
            if self.context is not None:
                self.context.report(
                    ChildFailed(
                        self.context.name,
                        self.incarnation,
                        error,
                        Directive.RESUME,
                        slot_uid=self.context.slot.uid,
                    )
                )
            return
        logger.error("%s failed (%s)", self.actor_path, directive.value, exc_info=error)
        self._end_incarnation(error, directive)
        try:
            self.on_failure(type(error), error, error.__traceback__)
        except Exception:
            logger.exception("%s: on_failure raised", self.actor_path)

    def _end_incarnation(self, error: BaseException, directive: Directive) -> None:
        self._failure, self._directive = error, directive
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
