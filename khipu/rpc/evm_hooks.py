"""A hook before every opcode of a py-evm computation: deadlines, access lists and tracers.

py-evm runs opcodes from the computation class's `opcodes` table; a subclass with every entry
wrapped calls `before(computation, opcode)` first. Child calls use the same subclass, so the hook
sees every frame. Raising from the hook aborts the whole execution (it is not a VMError).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from eth.abc import ComputationAPI, StateAPI

# A hook may return a callable run once the opcode has finished (or raised).
OpcodeHook = Callable[[ComputationAPI, int, Any], "Callable[[BaseException | None], None] | None"]


class ExecutionTimeout(Exception):
    """The EVM ran past its deadline (--rpc.evmtimeout)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"execution aborted (timeout = {seconds:g}s)")
        self.seconds = seconds


class _HookedOpcode:
    __slots__ = ("hook", "inner", "opcode")

    def __init__(self, inner: Any, opcode: int, hook: OpcodeHook) -> None:
        self.inner = inner
        self.opcode = opcode
        self.hook = hook

    def __call__(self, computation: ComputationAPI) -> None:
        after = self.hook(computation, self.opcode, self.inner)
        if after is None:
            self.inner(computation=computation)
            return
        try:
            self.inner(computation=computation)
        except BaseException as exc:
            after(exc)
            raise
        after(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def install_hook(state: StateAPI, hook: OpcodeHook) -> None:
    """Make every computation that `state` runs from now on call `hook` before each opcode."""
    base = state.computation_class
    opcodes = {op: _HookedOpcode(fn, op, hook) for op, fn in base.opcodes.items()}
    hooked = type(f"Hooked{base.__name__}", (base,), {"opcodes": opcodes})
    state.computation_class = hooked  # type: ignore[misc]


class ExecutionCancelled(Exception):
    """The server is stopping; running executions end early."""


def deadline_hook(seconds: float, cancelled: threading.Event | None = None) -> OpcodeHook:
    """A hook raising ExecutionTimeout once `seconds` have passed, or ExecutionCancelled once
    `cancelled` is set (both checked every 1024 opcodes)."""
    deadline = time.monotonic() + seconds
    counter = [0]

    def check(computation: ComputationAPI, opcode: int, fn: Any) -> None:
        counter[0] += 1
        if counter[0] & 1023 == 0:
            if time.monotonic() > deadline:
                raise ExecutionTimeout(seconds)
            if cancelled is not None and cancelled.is_set():
                raise ExecutionCancelled("the RPC server is stopping")
        return None

    return check


def chain_hooks(*hooks: OpcodeHook) -> OpcodeHook:
    def run(computation: ComputationAPI, opcode: int, fn: Any) -> Any:
        afters = [after for hook in hooks if (after := hook(computation, opcode, fn)) is not None]
        if not afters:
            return None

        def after_all(error: BaseException | None) -> None:
            for after in afters:
                after(error)

        return after_all

    return run
