"""Typed errors of the actor tree: what failed, where in the tree, and what a caller can do."""

from __future__ import annotations

import pykka


class ActorUnavailable(pykka.ActorDeadError):
    """A message could not be delivered: the actor is stopped, restarting past the caller's
    deadline, or the tree is shutting down.

    Subclasses Pykka's `ActorDeadError`, so code that already catches that keeps working.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} is unavailable: {reason}")
        self.path = path
        self.reason = reason


class ActorRestarted(ActorUnavailable):
    """The incarnation that held the message died before answering; a fresh one replaces it.

    The message was not processed (or its effects were lost with the dead actor's memory), so the
    caller may re-send it to the new incarnation if doing so is safe.
    """

    def __init__(self, path: str, incarnation: int) -> None:
        super().__init__(path, f"incarnation {incarnation} died before answering; it is restarted")
        self.incarnation = incarnation


class RequestRejected(Exception):
    """An actor refused a request as invalid: the caller's mistake, not the actor's failure.

    Raised from a handler, it goes back to the asker and the actor carries on: the supervisor's
    decider never sees it. Subclass it for errors that are part of an actor's protocol (an
    unknown block, a name already taken).
    """


class ActorStalled(Exception):
    """An actor did not answer a heartbeat within the timeout (it is stuck in a message handler)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(f"{path} did not answer a heartbeat within {timeout:g}s")
        self.path = path
        self.timeout = timeout


class ActorDied(Exception):
    """An actor's ref turned dead without a reported failure (a plain Pykka actor, or a thread that
    died of a `BaseException`)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} died without reporting a failure")
        self.path = path


class ProcessExited(Exception):
    """A supervised worker process exited on its own; negative codes are the killing signal."""

    def __init__(self, path: str, pid: int | None, exit_code: int | None) -> None:
        super().__init__(f"{path} (pid {pid}) exited with code {exit_code}")
        self.path = path
        self.pid = pid
        self.exit_code = exit_code


class ChildStartFailed(Exception):
    """A child's factory raised while building a fresh incarnation."""

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(f"{path} could not be started: {type(cause).__name__}: {cause}")
        self.path = path
        self.cause = cause


class SupervisorGaveUp(Exception):
    """A supervisor escalated: a child failed past the restart limit, or its decider said escalate.

    Carries the failing child's path, how many restarts were spent in which window, and the last
    error, so the message that finally stops the node says what to look at.
    """

    def __init__(
        self,
        supervisor: str,
        child: str,
        cause: BaseException | None,
        restarts: int,
        window: float,
    ) -> None:
        cause_text = f"{type(cause).__name__}: {cause}" if cause is not None else "normal exit"
        super().__init__(
            f"{supervisor} gave up on {child} after {restarts} restart(s) within {window:g}s "
            f"(last error: {cause_text})"
        )
        self.supervisor = supervisor
        self.child = child
        self.cause = cause
        self.restarts = restarts
        self.window = window
