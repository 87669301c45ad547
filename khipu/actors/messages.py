"""Messages of the actor tree: small frozen dataclasses named for what happened or what is asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from khipu.actors.strategy import Directive


@dataclass(frozen=True)
class Heartbeat:
    """Asked of every actor by the HealthMonitor; a SupervisedActor answers with a HealthReport."""

    sequence: int


@dataclass(frozen=True)
class HealthReport:
    """An actor's answer to a Heartbeat: who it is and how much work it has done."""

    actor: str
    incarnation: int
    processed: int
    mailbox: int
    sequence: int


@dataclass(frozen=True)
class ChildFailed:
    """Told to a supervisor when a child incarnation failed or ended.

    `error` is None for a normal stop the supervisor did not ask for. `directive` is the decision
    already taken where the error happened (RESUME means the child is still running); None lets the
    supervisor decide. `undelivered` holds tells found in the dead incarnation's mailbox.
    `slot_uid` tells a child apart from an earlier one of the same name (None: the current one).
    """

    name: str
    incarnation: int
    error: BaseException | None
    directive: Directive | None = None
    undelivered: tuple[Any, ...] = field(default=())
    slot_uid: int | None = None


@dataclass(frozen=True)
class ChildRestarted:
    """Published when a supervisor has started a fresh incarnation of a child."""

    path: str
    incarnation: int
    delay: float
    restarts: int
    at: float


@dataclass(frozen=True)
class ChildStopped:
    """Published when a supervisor stops a child for good (directive, restart policy, shutdown)."""

    path: str
    reason: str


@dataclass(frozen=True)
class TreeStopped:
    """Published once when the root supervisor has stopped; `clean` is False when it gave up."""

    reason: str
    clean: bool


@dataclass(frozen=True)
class Shutdown:
    """Asks a supervisor to stop taking work and stop its children in reverse start order."""

    reason: str = "shutdown requested"


@dataclass(frozen=True)
class RestartStalled:
    """Asks a supervisor to replace a child incarnation that did not answer a heartbeat."""

    name: str
    incarnation: int
    timeout: float
    slot_uid: int | None = None


@dataclass(frozen=True)
class RestartDue:
    """A supervisor's own timer message: the backoff delay before restarting `name` has passed."""

    name: str
    incarnation: int
    slot_uid: int | None = None


@dataclass(frozen=True)
class CheckChildren:
    """A supervisor's own timer message: look for child refs that died without a report."""


@dataclass(frozen=True)
class HealthTick:
    """The HealthMonitor's own timer message: heartbeat the tree, maybe log health lines."""
