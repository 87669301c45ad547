"""Fault injection: a test seam at named points of the node's actors.

A `FaultPlan` is built outside the actor tree and handed to every actor factory, so an armed fault
outlives the incarnation it kills: a fault armed for every hit makes a crash loop. In production
the plan is empty and `check` is a dictionary lookup.

Points: `StorageWriter.start`, `StorageWriter.import_block`, `Importer.next_block`,
`RegularSync.block`, `HealthMonitor.tick`, `ExecutionSupervisor.run_tasks`, `RpcServer.check`,
`Discovery.round`.
From the command line (the node's process tests) the plan comes from the environment:
`KHIPU_FAULTS="StorageWriter.start=raise:always"`, `"Importer.next_block=stall:3"`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("khipu.faults")

FAULTS_ENV = "KHIPU_FAULTS"

FAULT_POINTS: tuple[str, ...] = (
    "StorageWriter.start",
    "StorageWriter.import_block",
    "Importer.next_block",
    "RegularSync.block",
    "HealthMonitor.tick",
    "ExecutionSupervisor.run_tasks",
    "RpcServer.check",
    "Discovery.round",
)


class InjectedFault(RuntimeError):
    """The error an armed `raise` fault throws; names the point and the hit."""

    def __init__(self, point: str, hit: int) -> None:
        super().__init__(f"fault injected at {point} (hit {hit})")
        self.point = point
        self.hit = hit


@dataclass
class Fault:
    """One armed fault: after `skip` hits, the next `times` hits (None: all) raise or stall."""

    point: str
    kind: str  # "raise" or "stall"
    stall_seconds: float = 0.0
    skip: int = 0
    times: int | None = 1
    hits: int = 0
    fired: int = 0


class FaultPlan:
    """Faults armed at named points; thread-safe, shared by every incarnation of every actor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self.released = threading.Event()  # ends every stall early

    def arm_raise(self, point: str, *, skip: int = 0, times: int | None = 1) -> None:
        """Make hits `skip+1 .. skip+times` of `point` raise InjectedFault (every later hit when
        `times` is None). Raises ValueError for an unknown point."""
        self._arm(Fault(point, "raise", skip=skip, times=times))

    def arm_stall(
        self, point: str, seconds: float, *, skip: int = 0, times: int | None = 1
    ) -> None:
        """Make hits of `point` block for `seconds` (or until `release()`), as a stuck handler."""
        self._arm(Fault(point, "stall", stall_seconds=seconds, skip=skip, times=times))

    def release(self) -> None:
        """End every stall now and later (a test's clean-up)."""
        self.released.set()

    def fired(self, point: str) -> int:
        """How many times the fault at `point` went off."""
        with self._lock:
            fault = self._faults.get(point)
            return fault.fired if fault is not None else 0

    def check(self, point: str) -> None:
        """Called by an actor at `point`: raises InjectedFault or stalls if a fault is due."""
        if not self._faults:
            return
        with self._lock:
            fault = self._faults.get(point)
            if fault is None:
                return
            fault.hits += 1
            due = fault.hits > fault.skip and (fault.times is None or fault.fired < fault.times)
            if not due:
                return
            fault.fired += 1
            hit = fault.hits
        log.warning("fault injected: %s at %s (hit %d)", fault.kind, point, hit)
        if fault.kind == "raise":
            raise InjectedFault(point, hit)
        deadline = time.monotonic() + fault.stall_seconds
        while not self.released.is_set() and time.monotonic() < deadline:
            self.released.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def _arm(self, fault: Fault) -> None:
        if fault.point not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {fault.point!r}; known: {FAULT_POINTS}")
        with self._lock:
            self._faults[fault.point] = fault

    @classmethod
    def from_text(cls, text: str) -> FaultPlan:
        """Parse `POINT=raise[:N|:always][@SKIP]` or `POINT=stall:SECONDS[@SKIP]`, comma-separated.

        Raises ValueError naming the part that does not parse.
        """
        plan = cls()
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                point, _, action = part.partition("=")
                action, _, skip_text = action.partition("@")
                kind, _, arg = action.partition(":")
                skip = int(skip_text) if skip_text else 0
                if kind == "raise":
                    times = None if arg == "always" else int(arg or "1")
                    plan.arm_raise(point, skip=skip, times=times)
                elif kind == "stall":
                    plan.arm_stall(point, float(arg), skip=skip)
                else:
                    raise ValueError(f"unknown fault kind {kind!r}")
            except ValueError as error:
                raise ValueError(f"{FAULTS_ENV}: cannot parse {part!r}: {error}") from error
        return plan

    @classmethod
    def from_environment(cls) -> FaultPlan:
        """The plan in $KHIPU_FAULTS, or an empty plan."""
        return cls.from_text(os.environ.get(FAULTS_ENV, ""))
