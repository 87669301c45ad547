"""SupervisionTree: the running tree as the node's main thread sees it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pykka
from pykka.messages import ProxyCall, ProxyGetAttr

from khipu.actors.children import ChildTable
from khipu.actors.handle import ActorHandle
from khipu.actors.messages import Shutdown, TreeStopped
from khipu.actors.strategy import ChildSpec, SupervisionStrategy
from khipu.actors.supervision import Listener, Supervisor


class SupervisionTree:
    """Starts a root `Supervisor` with `children` and waits for the tree to end.

    The tree ends when `shutdown` is called (clean) or when the root supervisor gives up
    (`TreeStopped.clean` is False and its reason names the child and the last error).
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        strategy: SupervisionStrategy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        watch_interval: float = 1.0,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self._stopped = threading.Event()
        self.outcome: TreeStopped | None = None
        self.ref: pykka.ActorRef[Supervisor] = Supervisor.start(
            None,
            name,
            children,
            strategy,
            clock=clock,
            watch_interval=watch_interval,
            listeners=(*listeners, self._on_event),
        )
        table: ChildTable = self.ref.ask(ProxyGetAttr(attr_path=("table",)), block=True)
        self.table = table

    def _on_event(self, event: Any) -> None:
        if isinstance(event, TreeStopped):
            self.outcome = event
            self._stopped.set()

    def handle(self, path: str, *, timeout: float = 5.0) -> ActorHandle:
        """A lasting handle to the actor at `path` below the root ('SyncSupervisor/FastSync')."""
        return ActorHandle(self.table, path, timeout=timeout)

    def add_child(self, spec: ChildSpec, timeout: float = 30.0) -> str:
        """Start one more child of the root, after the others; returns its path. Raises
        RequestRejected as `Supervisor.add_child` does."""
        call = ProxyCall(attr_path=("add_child",), args=(spec,), kwargs={})
        return str(self.ref.ask(call, block=True, timeout=timeout))

    def shutdown(self, reason: str = "shutdown requested", timeout: float = 30.0) -> TreeStopped:
        """Stop taking work, stop every child in reverse start order, and wait for the root.

        Returns how the tree ended (a tree that had already given up keeps that outcome).
        Raises TimeoutError if the root has not stopped within `timeout`.
        """
        # A root already stopped has its outcome known, or about to be.
        with contextlib.suppress(pykka.ActorDeadError):
            self.ref.tell(Shutdown(reason))
        outcome = self.wait(timeout)
        if outcome is None:
            raise TimeoutError(f"{self.table.path} did not stop within {timeout:g}s")
        return outcome

    def wait(self, timeout: float | None = None) -> TreeStopped | None:
        """Block until the tree has stopped and return how, or None after `timeout` seconds."""
        self._stopped.wait(timeout)
        return self.outcome

    @property
    def stopped(self) -> bool:
        """True once the root supervisor has stopped."""
        return self._stopped.is_set()
