"""How a supervisor answers a child's failure: directives, deciders, strategies and child specs."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from khipu.actors.backoff import ExponentialBackoff

if TYPE_CHECKING:
    import pykka

    from khipu.actors.children import ChildContext, ChildRuntime


class Directive(enum.Enum):
    """What to do with a child whose message handler raised (after Akka's supervisor directives)."""

    RESUME = "resume"  # keep the actor and its state; the failing message's caller gets the error
    RESTART = "restart"  # build a fresh incarnation with the factory (state comes from storage)
    STOP = "stop"  # stop the child for good; its siblings go on
    ESCALATE = "escalate"  # the supervisor fails itself and lets its own parent decide


Decider = Callable[[BaseException], Directive]


def always_restart(_error: BaseException) -> Directive:
    """The default decider: every failure restarts the child."""
    return Directive.RESTART


def decider_from_map(
    directives: Mapping[type[BaseException], Directive], default: Directive = Directive.RESTART
) -> Decider:
    """A decider choosing by exception type; the most specific class in the error's MRO wins.

    `decider_from_map({ValueError: Directive.RESUME, StoreCorrupted: Directive.ESCALATE})` resumes
    on any `ValueError` subclass, escalates on `StoreCorrupted`, and returns `default` otherwise.
    """
    table = dict(directives)

    def decide(error: BaseException) -> Directive:
        for cls in type(error).__mro__:
            if cls in table:
                return table[cls]
        return default

    return decide


class StrategyKind(enum.Enum):
    """Which children a failure restarts."""

    ONE_FOR_ONE = "one_for_one"  # only the failed child
    ALL_FOR_ONE = "all_for_one"  # every child, stopped in reverse start order, started in order


class RestartPolicy(enum.Enum):
    """When a child that ended is started again (after Erlang/OTP's child restart types)."""

    PERMANENT = "permanent"  # always, also after a normal stop it did not ask for
    TRANSIENT = "transient"  # only after a failure
    TEMPORARY = "temporary"  # never: the child is stopped for good when it ends


@dataclass(frozen=True)
class SupervisionStrategy:
    """A supervisor's rules: which children restart, on what, how often, and how fast.

    At most `max_restarts` restarts of one child within `within_seconds`; the next failure
    escalates.
    """

    kind: StrategyKind = StrategyKind.ONE_FOR_ONE
    decider: Decider = always_restart
    max_restarts: int = 5
    within_seconds: float = 60.0
    backoff: ExponentialBackoff = field(default_factory=ExponentialBackoff)

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.within_seconds <= 0:
            raise ValueError(f"within_seconds must be > 0, got {self.within_seconds}")


ChildFactory = Callable[["ChildContext"], "pykka.ActorRef[Any] | ChildRuntime"]


@dataclass(frozen=True)
class ChildSpec:
    """How to build one child of a supervisor.

    `factory(context)` returns a started Pykka `ActorRef` (a `SupervisedActor` takes the context as
    its first argument; a plain Pykka actor may ignore it) or a `ChildRuntime` such as a
    `ProcessChild`. It is called again for every restart, so the new incarnation rebuilds its
    state from storage, never from the dead one's memory.

    `redeliver` re-sends tells left in a dead incarnation's mailbox to the next one (safe only for
    idempotent messages); without it they are logged as dropped. `stop_timeout` bounds a graceful
    stop before the incarnation is abandoned. The supervisor waits up to `start_timeout` for a
    SupervisedActor's `on_start` to finish before starting the next child, so children start in
    order (StorageWriter is ready before the importer needs it).
    """

    name: str
    factory: ChildFactory
    restart: RestartPolicy = RestartPolicy.PERMANENT
    stop_timeout: float = 5.0
    start_timeout: float = 10.0
    redeliver: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"child name must be non-empty without '/', got {self.name!r}")
