"""The Supervisor actor: starts children from specs, learns of their deaths, applies its strategy.

A supervisor is itself a `SupervisedActor`, so supervisors nest: one that gives up fails with
`SupervisorGaveUp`, and its parent's decider chooses what happens to the whole subtree. The root
has no parent: when it gives up, the tree stops cleanly and `TreeStopped(clean=False)` says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from khipu.actors.actor import SupervisedActor
from khipu.actors.backoff import RestartWindow
from khipu.actors.children import (
    ActorChild,
    ChildContext,
    ChildRuntime,
    ChildSlot,
    ChildState,
    ChildTable,
)
from khipu.actors.errors import (
    ActorDied,
    ActorRestarted,
    ActorStalled,
    ChildStartFailed,
    RequestRejected,
    SupervisorGaveUp,
)
from khipu.actors.messages import (
    CheckChildren,
    ChildFailed,
    ChildRestarted,
    ChildStopped,
    Heartbeat,
    RestartDue,
    RestartStalled,
    Shutdown,
    TreeStopped,
)
from khipu.actors.strategy import (
    ChildSpec,
    Directive,
    RestartPolicy,
    StrategyKind,
    SupervisionStrategy,
)
from khipu.actors.timers import ActorTimers

logger = logging.getLogger("khipu.actors")

Listener = Callable[[Any], None]


@dataclass
class RestartBook:
    """A supervisor's private record of one child: recent restarts, the last backoff delay, and
    tells waiting for the next incarnation."""

    window: RestartWindow
    delay: float = 0.0
    pending: list[Any] = field(default_factory=list)


class Supervisor(SupervisedActor):
    """Starts `children` in order and keeps them running according to `strategy`.

    `clock` (monotonic seconds) drives the restart window; `watch_interval` is how often refs of
    plain Pykka children are checked for a death nobody reported. `listeners` receive the
    supervision events (ChildFailed, ChildRestarted, ChildStopped, SupervisorGaveUp, TreeStopped)
    in the supervisor's thread, so they must return quickly; nested supervisors inherit them.
    `added` holds the specs of children added at run time; given the same list, a restarted
    supervisor starts them again.
    """

    def __init__(
        self,
        context: ChildContext | None,
        name: str,
        children: Sequence[ChildSpec],
        strategy: SupervisionStrategy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        watch_interval: float = 1.0,
        listeners: Sequence[Listener] = (),
        added: list[ChildSpec] | None = None,
    ) -> None:
        super().__init__(context)
        # Children added at run time, kept across this supervisor's restarts (see add_child).
        self._added = added if added is not None else []
        given = {spec.name for spec in children}
        children = [*children, *(spec for spec in self._added if spec.name not in given)]
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: child names must be unique, got {names}")
        self.strategy = strategy or SupervisionStrategy()
        self.clock = clock
        self.watch_interval = watch_interval
        inherited = context.listeners if context is not None else ()
        self.listeners: tuple[Listener, ...] = (*inherited, *listeners)
        self.table = ChildTable(context.path if context is not None else name)
        self.root_table = context.root if context is not None else self.table
        for spec in children:
            self.table.slots.append(ChildSlot(spec, self.table.path, self.actor_ref))
        if context is not None:
            context.slot.subtree = self.table
        self._books: dict[int, RestartBook] = {}
        self._timers = ActorTimers(self.actor_ref)
        self._stopping = False
        self._stop_reason = "stopped"

    @property
    def actor_path(self) -> str:
        return self.table.path

    # -- life cycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        for slot in list(self.table.slots):
            # A failed start under all-for-one leaves the later children to its restart.
            if slot.state is ChildState.STARTING:
                self._start_child(slot)
        self._timers.every(self.watch_interval, CheckChildren())

    def on_stop(self) -> None:
        self._stop_children(self._stop_reason)

    def on_failure(self, *_exc_info: Any) -> None:
        # A bug in this supervisor must not leave its children running without supervision.
        self._stop_children(f"{self.actor_path} failed")

    def _actor_loop_teardown(self) -> None:
        self._stopping = True
        self._timers.cancel_all()
        super()._actor_loop_teardown()
        if self.context is None:
            if self._failure is None:
                event = TreeStopped(reason=self._stop_reason, clean=True)
                logger.info("%s stopped: %s", self.actor_path, self._stop_reason)
            else:
                event = TreeStopped(reason=f"supervision gave up: {self._failure}", clean=False)
                logger.critical("khipu: %s; the node is stopping", event.reason)
            self._publish(event)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildFailed):
            self._child_failed(message)
        elif isinstance(message, RestartDue):
            self._restart_due(message)
        elif isinstance(message, CheckChildren):
            self._check_children()
        elif isinstance(message, RestartStalled):
            self._restart_stalled(message)
        elif isinstance(message, Shutdown):
            self.shutdown(message.reason)
        else:
            return super().on_receive(message)
        return None

    def shutdown(self, reason: str) -> None:
        """Stop taking work, then stop the children in reverse start order, then this supervisor."""
        self._stop_reason = reason
        self._stopping = True
        for slot in self.table.walk():
            slot.close()
        self.stop()

    def add_child(self, spec: ChildSpec) -> str:
        """Start one more child, after the others (e.g. an actor per connected peer); returns
        its path. Call through the supervisor's mailbox (`handle.call("add_child", spec)`).

        A permanent or transient child added this way is started again when this supervisor is
        restarted (its spec is kept in `added`); a temporary one (e.g. a peer's connection) is
        not. Raises RequestRejected if a running child has that name or the supervisor is stopping.
        """
        if self._stopping:
            raise RequestRejected(f"{self.actor_path} is stopping, not taking new children")
        for existing in list(self.table.slots):
            if existing.name == spec.name:
                if existing.state is not ChildState.STOPPED:
                    raise RequestRejected(f"{existing.path} already exists")
                self._forget(existing)
        slot = ChildSlot(spec, self.table.path, self.actor_ref)
        self.table.slots.append(slot)
        self._forget_added(spec.name)
        if spec.restart is not RestartPolicy.TEMPORARY:
            self._added.append(spec)
        self._start_child(slot)
        return slot.path

    def _forget_added(self, name: str) -> None:
        self._added[:] = [spec for spec in self._added if spec.name != name]

    def remove_child(self, name: str, reason: str = "removed") -> None:
        """Stop the child called `name` for good and forget it; RequestRejected if there is none."""
        slot = self._slot_for(name, None)
        if slot is None:
            raise RequestRejected(f"{self.actor_path} has no child {name!r}")
        if slot.state is not ChildState.STOPPED:
            self._stop_for_good(slot, reason)
        self._forget(slot)
        self._forget_added(name)

    def _slot_for(self, name: str, slot_uid: int | None) -> ChildSlot | None:
        """The child a message is about, or None if it was removed or replaced."""
        for slot in self.table.slots:
            if slot.name == name and (slot_uid is None or slot.uid == slot_uid):
                return slot
        return None

    def _book(self, slot: ChildSlot) -> RestartBook:
        book = self._books.get(slot.uid)
        if book is None:
            window = RestartWindow(
                self.strategy.max_restarts, self.strategy.within_seconds, clock=self.clock
            )
            book = self._books[slot.uid] = RestartBook(window)
        return book

    def _forget(self, slot: ChildSlot) -> None:
        if slot in self.table.slots:
            self.table.slots.remove(slot)
        self._books.pop(slot.uid, None)

    # -- starting ------------------------------------------------------------------------------

    def _start_child(self, slot: ChildSlot) -> bool:
        """Start the next incarnation of `slot`; a raising factory counts as that child failing."""
        incarnation = slot.incarnation + 1
        slot.incarnation = incarnation
        context = ChildContext(
            name=slot.name,
            path=slot.path,
            incarnation=incarnation,
            decider=self.strategy.decider,
            parent=self.actor_ref,
            slot=slot,
            root=self.root_table,
            listeners=self.listeners,
        )
        slot.subtree = None
        try:
            made = slot.spec.factory(context)
        except Exception as error:
            logger.error("%s: factory raised", slot.path, exc_info=True)
            slot.runtime = None
            failed = ChildStartFailed(slot.path, error)
            failure = ChildFailed(slot.name, incarnation, failed, slot_uid=slot.uid)
            self._apply_failure(slot, failure)
            return False
        runtime: ChildRuntime = ActorChild(made) if isinstance(made, pykka.ActorRef) else made
        self._await_started(slot, runtime)
        slot.set_running(runtime, incarnation)
        book = self._book(slot)
        pending, book.pending = book.pending, []
        undelivered = [message for message in pending if not runtime.deliver(message)]
        if undelivered:
            book.pending.extend(undelivered)
            self._settle_undelivered(slot)
        return True

    def _await_started(self, slot: ChildSlot, runtime: ChildRuntime) -> None:
        """Wait for a SupervisedActor's on_start: a heartbeat is answered only after it.

        A failed start is not handled here: the child reports it, and the report waits in this
        supervisor's mailbox. A slow start only logs; the HealthMonitor watches it from then on.
        """
        if not isinstance(runtime, ActorChild) or not reports_own_death(runtime):
            return
        try:
            runtime.ref.ask(Heartbeat(0), timeout=slot.spec.start_timeout)
        except pykka.Timeout:
            logger.warning("%s still starting after %gs", slot.path, slot.spec.start_timeout)
        except pykka.ActorDeadError:
            pass

    def _restart_due(self, message: RestartDue) -> None:
        if self._stopping:
            return
        slot = self._slot_for(message.name, message.slot_uid)
        if slot is None or slot.incarnation != message.incarnation:
            return
        if slot.state is not ChildState.RESTARTING:
            return
        if self.strategy.kind is StrategyKind.ALL_FOR_ONE:
            targets = [s for s in self.table.slots if s.state is ChildState.RESTARTING]
        else:
            targets = [slot]
        delay = self._book(slot).delay
        for target in targets:
            target.restarts += 1
            if not self._start_child(target):
                break
            logger.info("%s restarted (incarnation %d)", target.path, target.incarnation)
            self._publish(
                ChildRestarted(
                    target.path, target.incarnation, delay, target.restarts, at=self.clock()
                )
            )

    # -- failures ------------------------------------------------------------------------------

    def _child_failed(self, message: ChildFailed) -> None:
        slot = self._slot_for(message.name, message.slot_uid)
        if slot is None:
            return  # a child that was removed
        current = message.incarnation == slot.incarnation
        if current and message.undelivered:
            self._book(slot).pending.extend(message.undelivered)
        if self._stopping or not current or slot.state is not ChildState.RUNNING:
            self._settle_undelivered(slot)
            return  # a stop or restart we asked for, or a stale incarnation
        self._apply_failure(slot, message)

    def _apply_failure(self, slot: ChildSlot, message: ChildFailed) -> None:
        """Record the failure of the current incarnation and carry out the directive."""
        slot.record_error(message.error, time.time())
        self._publish(message)
        directive = self._directive_for(slot, message)
        if directive is Directive.RESUME:
            return
        if directive is Directive.STOP:
            reason = "normal exit" if message.error is None else f"stopped after {message.error!r}"
            self._stop_for_good(slot, reason)
        elif directive is Directive.ESCALATE:
            self._give_up(slot, message.error)
        else:
            self._schedule_restart(slot, message.error)
        self._settle_undelivered(slot)

    def _directive_for(self, slot: ChildSlot, message: ChildFailed) -> Directive:
        policy = slot.spec.restart
        if policy is RestartPolicy.TEMPORARY:
            return Directive.RESUME if message.directive is Directive.RESUME else Directive.STOP
        if message.error is None:
            return Directive.RESTART if policy is RestartPolicy.PERMANENT else Directive.STOP
        if message.directive is not None:
            return message.directive
        return self.strategy.decider(message.error)

    def _schedule_restart(self, slot: ChildSlot, error: BaseException | None) -> None:
        book = self._book(slot)
        window = book.window
        if not window.allows_another():
            self._give_up(slot, error)
            return
        delay = self.strategy.backoff.delay(window.recent())
        window.record()
        book.delay = delay
        if self.strategy.kind is StrategyKind.ALL_FOR_ONE:
            for sibling in reversed(self.table.slots):
                if sibling is slot:
                    continue
                if sibling.state is ChildState.RUNNING:
                    sibling.set_state(ChildState.RESTARTING)
                    self._retire(sibling, graceful=True)
                elif sibling.state is ChildState.STARTING:
                    sibling.set_state(ChildState.RESTARTING)  # not started yet: start with all
        slot.set_state(ChildState.RESTARTING)
        self._retire(slot, graceful=False)
        logger.warning("%s restarting in %.3fs", slot.path, delay)
        self._timers.once(delay, RestartDue(slot.name, slot.incarnation, slot.uid))

    def _retire(self, slot: ChildSlot, graceful: bool) -> None:
        """End the current incarnation; asks left in its mailbox fail with ActorRestarted."""
        slot.subtree = None  # a restarted child supervisor brings a new table
        runtime = slot.runtime
        if runtime is None:
            return
        if graceful:
            runtime.stop(slot.spec.stop_timeout)
        elif runtime.is_alive():
            runtime.abandon()
        undelivered = runtime.drain(ActorRestarted(slot.path, slot.incarnation))
        self._book(slot).pending.extend(undelivered)

    def _settle_undelivered(self, slot: ChildSlot) -> None:
        """Keep tells for the next incarnation if the spec allows redelivery, else report them."""
        book = self._books.get(slot.uid)
        pending = book.pending if book is not None else []
        if pending and (not slot.spec.redeliver or slot.state is ChildState.STOPPED):
            logger.warning(
                "%s: %d told message(s) to a dead incarnation dropped: %s",
                slot.path,
                len(pending),
                ", ".join(type(m).__name__ for m in pending[:5]),
            )
            pending.clear()

    def _stop_for_good(self, slot: ChildSlot, reason: str) -> None:
        self._forget_added(slot.name)  # a restarted supervisor does not bring it back
        slot.set_state(ChildState.STOPPED, reason)
        self._retire(slot, graceful=True)
        logger.warning("%s stopped for good: %s", slot.path, reason)
        if slot.spec.restart is RestartPolicy.TEMPORARY:
            self._forget(slot)  # e.g. a disconnected peer: nothing to keep
        self._publish(ChildStopped(slot.path, reason))

    def _give_up(self, slot: ChildSlot, error: BaseException | None) -> None:
        """Stop every child and fail this supervisor so that its parent decides."""
        window = self._book(slot).window
        gave_up = SupervisorGaveUp(
            self.actor_path, slot.path, error, window.recent(), self.strategy.within_seconds
        )
        logger.error("%s", gave_up)
        self._publish(gave_up)
        self._stopping = True
        self._timers.cancel_all()
        self._stop_children(f"{self.actor_path} gave up")
        for child in self.table.walk():
            if self.context is None:
                child.close()  # the root: nothing will come back
            else:
                child.mark_replaced()
        decided = self.context.decider(gave_up) if self.context is not None else Directive.ESCALATE
        # A supervisor that stopped its children cannot resume: restarting is the nearest.
        if decided is Directive.RESUME:
            decided = Directive.RESTART
        self._end_incarnation(gave_up, decided)

    def _restart_stalled(self, message: RestartStalled) -> None:
        slot = self._slot_for(message.name, message.slot_uid)
        if slot is None or message.incarnation != slot.incarnation:
            return
        if slot.state is not ChildState.RUNNING:
            return
        self._child_failed(
            ChildFailed(
                slot.name,
                slot.incarnation,
                ActorStalled(slot.path, message.timeout),
                slot_uid=slot.uid,
            )
        )

    def _check_children(self) -> None:
        """Find children whose death nobody reported (plain Pykka actors)."""
        if self._stopping:
            return
        for slot in self.table.slots:
            runtime = slot.runtime
            if slot.state is not ChildState.RUNNING or runtime is None:
                continue
            if reports_own_death(runtime):
                continue
            if not runtime.is_alive():
                died = ActorDied(slot.path)
                self._child_failed(
                    ChildFailed(slot.name, slot.incarnation, died, slot_uid=slot.uid)
                )

    # -- stopping ------------------------------------------------------------------------------

    def _stop_children(self, reason: str) -> None:
        """Stop every running child in reverse start order, each within its stop timeout."""
        self._stopping = True
        self._timers.cancel_all()
        for slot in reversed(self.table.slots):
            was = slot.state
            slot.set_state(ChildState.STOPPED, reason)
            runtime = slot.runtime
            if runtime is None or was is ChildState.STOPPED:
                continue
            logger.info("stopping %s", slot.path)
            if runtime.is_alive():
                runtime.stop(slot.spec.stop_timeout)
            runtime.drain(pykka.ActorDeadError(f"{slot.path} stopped: {reason}"))
            self._publish(ChildStopped(slot.path, reason))

    # -- helpers -------------------------------------------------------------------------------

    def _publish(self, event: Any) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("%s: supervision listener raised on %r", self.actor_path, event)


def reports_own_death(runtime: ChildRuntime) -> bool:
    """True for runtimes that tell their supervisor when they end (SupervisedActor, processes)."""
    if isinstance(runtime, ActorChild):
        return issubclass(runtime.ref.actor_class, SupervisedActor)
    return True


def supervisor_spec(
    name: str,
    children: Sequence[ChildSpec],
    strategy: SupervisionStrategy | None = None,
    *,
    stop_timeout: float = 60.0,
    watch_interval: float = 1.0,
) -> ChildSpec:
    """The spec of a nested supervisor, e.g. SyncSupervisor under NodeSupervisor.

    Its stop timeout is long by default: stopping it stops its whole subtree. Children added to
    it at run time (`add_child`) are started again by each new incarnation.
    """

    added: list[ChildSpec] = []  # children added at run time, shared by every incarnation

    def start(context: ChildContext) -> pykka.ActorRef[Any]:
        ref: pykka.ActorRef[Any] = Supervisor.start(
            context, name, children, strategy, watch_interval=watch_interval, added=added
        )
        return ref

    return ChildSpec(name, start, stop_timeout=stop_timeout)
