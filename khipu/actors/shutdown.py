"""Graceful shutdown: the first SIGINT/SIGTERM stops the tree cleanly, a second forces exit."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TextIO

from khipu.actors.tree import SupervisionTree

logger = logging.getLogger("khipu.actors")

EXIT_CLEAN = 0
EXIT_GAVE_UP = 1  # supervision gave up: the tree stopped itself
EXIT_FORCED = 130  # a second signal cut the graceful stop short


class GracefulShutdown:
    """Turns the first SIGINT or SIGTERM into `tree.shutdown()`: the root stops taking work and
    stops its children in reverse start order. A second signal while that runs exits at once
    through `force_exit` (default `os._exit`) with EXIT_FORCED.

    Use from the main thread: `shutdown.install()`, then `sys.exit(shutdown.run())`.
    """

    def __init__(
        self,
        tree: SupervisionTree,
        *,
        stop_timeout: float = 30.0,
        signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
        force_exit: Callable[[int], Any] = os._exit,
        out: TextIO | None = None,
    ) -> None:
        self.tree = tree
        self.stop_timeout = stop_timeout
        self.signals = tuple(signals)
        self.force_exit = force_exit
        self.out = out if out is not None else sys.stderr
        self.requested = threading.Event()
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Install the handlers (main thread only; signal.signal raises ValueError elsewhere)."""
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        """Put back the handlers that were there before `install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def run(self) -> int:
        """Wait until the tree has stopped; EXIT_CLEAN after a clean stop, EXIT_GAVE_UP when
        supervision gave up (the reason is printed)."""
        while self.tree.wait(0.2) is None:
            pass  # short waits keep the main thread free to run signal handlers
        outcome = self.tree.outcome
        assert outcome is not None
        if outcome.clean:
            self._say(f"khipu: stopped cleanly ({outcome.reason})")
            return EXIT_CLEAN
        self._say(f"khipu: {outcome.reason}")
        return EXIT_GAVE_UP

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            self._say(f"khipu: second {name}, exiting now without a clean stop")
            self.force_exit(EXIT_FORCED)
            return
        self.requested.set()
        self._say(f"khipu: {name} received, stopping (send it again to force)")
        # The stop blocks while children finish; the handler must return so a second signal
        # can still be handled.
        threading.Thread(
            target=self._stop_tree, args=(f"{name} received",), name="shutdown", daemon=True
        ).start()

    def _stop_tree(self, reason: str) -> None:
        try:
            self.tree.shutdown(reason, timeout=self.stop_timeout)
        except TimeoutError:
            self._say(f"khipu: the tree did not stop within {self.stop_timeout:g}s; exiting")
            self.force_exit(EXIT_FORCED)

    def _say(self, text: str) -> None:
        logger.info("%s", text)
        print(text, file=self.out, flush=True)
