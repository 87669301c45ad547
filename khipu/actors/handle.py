"""ActorHandle: a reference to a supervised actor that callers keep across its restarts."""

from __future__ import annotations

import time
from typing import Any

import pykka
from pykka.messages import ProxyCall

from khipu.actors.children import ActorChild, ChildSlot, ChildTable
from khipu.actors.errors import ActorRestarted, ActorUnavailable

# How often to look again for a child whose own supervisor is being restarted (its slot is
# replaced then, so there is nothing to wait on yet).
_RESOLVE_POLL = 0.01


class ActorHandle:
    """Sends to whichever incarnation of the actor at `path` (relative to the root) is running.

    While the actor restarts, calls wait for the new incarnation up to their timeout. A message
    caught in an incarnation that dies is never dropped silently: `ask` raises `ActorRestarted`,
    or with `retry=True` re-sends it to the next incarnation (only for idempotent requests); `tell`
    re-sends to the next incarnation or raises `ActorUnavailable` at the deadline.
    """

    def __init__(self, root: ChildTable, path: str, *, timeout: float = 5.0) -> None:
        self.root = root
        self.path = path
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ActorHandle({self.root.path}/{self.path})"

    def ask(self, message: Any, *, timeout: float | None = None, retry: bool = False) -> Any:
        """Send `message` and return the answer.

        Raises whatever the handler raised; `ActorRestarted` if the incarnation died holding the
        message (unless `retry`); `ActorUnavailable` if the actor is stopped, the node shuts down,
        or no incarnation runs before the deadline; `pykka.Timeout` if a live actor does not
        answer in time.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen = 0
        while True:
            slot, ref, incarnation = self._resolve(seen, deadline)
            seen = incarnation
            if not ref.is_alive():
                continue  # dead before we sent: nothing is lost, wait for its successor
            try:
                return ref.ask(message, timeout=max(0.0, deadline - time.monotonic()))
            except ActorRestarted:
                if ref.is_alive() or not retry:
                    raise  # from the drained mailbox, or the handler's own about another actor
            except pykka.ActorDeadError as error:
                if ref.is_alive() or isinstance(error, ActorUnavailable):
                    raise
                if not retry:  # a plain Pykka actor died holding the message
                    raise ActorRestarted(slot.path, incarnation) from error
            except pykka.Timeout:
                if ref.is_alive():
                    raise
                if not retry:
                    raise ActorRestarted(slot.path, incarnation) from None

    def tell(self, message: Any, *, timeout: float | None = None) -> None:
        """Put `message` in the mailbox of a running incarnation, waiting for one if restarting.

        Raises ActorUnavailable when no incarnation takes it before the deadline.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen = 0
        while True:
            _, ref, incarnation = self._resolve(seen, deadline)
            try:
                ref.tell(message)
                return
            except pykka.ActorDeadError:
                seen = incarnation

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call a method of the actor (as a Pykka proxy would) and return its result; errors as
        for `ask` without retry."""
        return self.ask(ProxyCall(attr_path=(method,), args=args, kwargs=kwargs), timeout=timeout)

    def _resolve(
        self, newer_than: int, deadline: float
    ) -> tuple[ChildSlot, pykka.ActorRef[Any], int]:
        while True:
            remaining = deadline - time.monotonic()
            try:
                slot = self.root.find(self.path)
            except KeyError:
                slot = None  # a supervisor on the way is restarting and has no table yet
            if slot is None:
                if remaining <= 0:
                    raise ActorUnavailable(self.path, "not in the tree by the deadline")
                time.sleep(min(_RESOLVE_POLL, remaining))
                continue
            try:
                runtime, incarnation = slot.running_after(newer_than, max(0.0, remaining))
            except ActorUnavailable:
                if slot.closing or remaining <= 0:
                    raise
                if slot.replaced:
                    time.sleep(min(_RESOLVE_POLL, remaining))
                    continue
                if self._still_current(slot):
                    raise
                continue  # the slot was replaced by a restarted supervisor: look again
            if not isinstance(runtime, ActorChild):
                raise TypeError(f"{slot.path} is a {runtime.kind}, not an actor")
            return slot, runtime.ref, incarnation

    def _still_current(self, slot: ChildSlot) -> bool:
        try:
            return self.root.find(self.path) is slot
        except KeyError:
            return False
