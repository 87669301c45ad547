"""ProcessChild: a worker process as a supervised child, watched by a thread waiting on its exit."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import threading
from collections.abc import Callable
from typing import Any

from khipu.actors.children import ChildContext, ChildRuntime
from khipu.actors.errors import ProcessExited
from khipu.actors.messages import ChildFailed

logger = logging.getLogger("khipu.actors")


class ProcessChild(ChildRuntime):
    """Runs `target(*args)` in a new process and reports its exit to the supervisor.

    Exit code 0 is a normal exit; any other code, or death by a signal (negative code, e.g. -9
    for SIGKILL), is a failure with `ProcessExited`, given to the supervisor's decider. The
    default start method is 'spawn': forking a process that runs actor threads is unsafe.
    `target` must be importable by the new process (a module-level function).
    """

    kind = "process"

    def __init__(
        self,
        context: ChildContext,
        target: Callable[..., Any],
        args: tuple[Any, ...] = (),
        *,
        start_method: str = "spawn",
    ) -> None:
        self.context = context
        self._stopping = threading.Event()
        mp: Any = multiprocessing.get_context(start_method)
        self.process: multiprocessing.process.BaseProcess = mp.Process(
            target=target, args=args, name=context.path, daemon=True
        )
        self.process.start()
        self._watcher = threading.Thread(
            target=self._watch, name=f"watch {context.path}", daemon=True
        )
        self._watcher.start()

    def _watch(self) -> None:
        self.process.join()
        if self._stopping.is_set():
            return  # the supervisor stopped it; nothing to report
        code = self.process.exitcode
        error = None if code == 0 else ProcessExited(self.context.path, self.process.pid, code)
        logger.warning("%s (pid %s) exited with code %s", self.context.path, self.process.pid, code)
        self.context.report(
            ChildFailed(
                self.context.name,
                self.context.incarnation,
                error,
                slot_uid=self.context.slot.uid,
            )
        )

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def pid(self) -> int | None:
        return self.process.pid

    def stop(self, timeout: float) -> bool:
        """SIGTERM, then SIGKILL if the process is still there after `timeout` seconds."""
        self._stopping.set()
        if not self.process.is_alive():
            return True
        self.process.terminate()
        self.process.join(timeout)
        if self.process.is_alive():
            logger.warning("%s ignored SIGTERM for %gs; killing it", self.context.path, timeout)
            self.process.kill()
            self.process.join(timeout)
            return False
        return True

    def abandon(self) -> None:
        self._stopping.set()
        if self.process.is_alive():
            self.process.kill()
