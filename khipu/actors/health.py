"""HealthMonitor: heartbeats every actor of the tree, keeps a health board, logs health lines."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pykka

from khipu.actors.actor import SupervisedActor
from khipu.actors.children import ChildContext, ChildSlot, ChildState, ChildTable
from khipu.actors.messages import HealthReport, HealthTick, Heartbeat, RestartStalled
from khipu.actors.timers import ActorTimers

if TYPE_CHECKING:
    from khipu.actors.metrics import NodeMetrics

logger = logging.getLogger("khipu.health")

LogFormat = Literal["logfmt", "json"]


@dataclass(frozen=True)
class HealthConfig:
    """How often to heartbeat and log, how long an actor may take to answer, and what to do then.

    An actor is stalled after `stall_misses` heartbeats in a row went unanswered within
    `heartbeat_timeout` (one slow answer is a long message, not a stuck actor). Then
    `restart_stalled` asks its supervisor to replace it (the supervisor's decider sees an
    `ActorStalled` error); without it the stall is only reported.
    """

    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 2.0
    stall_misses: int = 3
    log_interval: float = 60.0
    log_format: LogFormat = "logfmt"
    restart_stalled: bool = True

    def __post_init__(self) -> None:
        if self.log_format not in ("logfmt", "json"):
            raise ValueError(f"log_format must be 'logfmt' or 'json', got {self.log_format!r}")
        if self.heartbeat_interval <= 0 or self.heartbeat_timeout <= 0 or self.log_interval <= 0:
            raise ValueError("heartbeat_interval, heartbeat_timeout and log_interval must be > 0")
        if self.stall_misses < 1:
            raise ValueError(f"stall_misses must be >= 1, got {self.stall_misses}")


@dataclass(frozen=True)
class ActorHealth:
    """What the board knows of one actor (or worker process) of the tree."""

    actor: str  # path below the root, e.g. "StorageWriter" or "SyncSupervisor/FastSync"
    kind: str  # "actor" or "process"
    state: str  # running, restarting, stalled, stopped, starting
    mailbox: int | None
    processed: int | None
    restarts: int
    incarnation: int
    last_error: str | None
    last_error_at: float | None
    last_heartbeat_at: float | None
    pid: int | None = None
    missed_heartbeats: int = 0  # in a row, for the current incarnation
    activity: str | None = None  # a worker process's own state: busy, idle, ...


@dataclass
class HealthBoard:
    """The latest health of every actor; shared, thread-safe, outlives HealthMonitor restarts.

    The JSON-RPC method `khipu_health` answers `health_snapshot()`.
    """

    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _actors: dict[str, ActorHealth] = field(default_factory=dict)

    def publish(self, actors: list[ActorHealth]) -> None:
        """Replace the board with one round of checks, in tree order; actors that left the tree
        (a disconnected peer) leave the board."""
        with self._lock:
            self._actors = {health.actor: health for health in actors}

    def get(self, actor: str) -> ActorHealth | None:
        """The latest health of `actor`, or None if it was never checked."""
        with self._lock:
            return self._actors.get(actor)

    def all(self) -> list[ActorHealth]:
        """Every actor's latest health, in tree order (depth first, start order)."""
        with self._lock:
            return list(self._actors.values())

    def health_snapshot(self) -> dict[str, Any]:
        """A JSON-ready picture: `{"ts": iso-8601, "actors": [ {actor, state, mailbox, ...} ]}`."""
        return {"ts": iso_time(self.clock()), "actors": [asdict(h) for h in self.all()]}


class HealthMonitor(SupervisedActor):
    """Every `heartbeat_interval`, asks every actor of the tree for a HealthReport.

    An actor that misses `stall_misses` heartbeats in a row (no answer within `heartbeat_timeout`)
    is reported as stalled and, if the config says so, its supervisor is asked to restart it.
    Every `log_interval`, one health line per actor goes to `emit` (default: the 'khipu.health'
    logger at INFO), in logfmt or JSON.
    """

    def __init__(
        self,
        context: ChildContext | None,
        board: HealthBoard,
        config: HealthConfig | None = None,
        *,
        root: ChildTable | None = None,
        emit: Callable[[str], None] | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        super().__init__(context)
        tree = root if root is not None else (context.root if context is not None else None)
        if tree is None:
            raise ValueError("HealthMonitor needs a tree: run it under a supervisor or pass root")
        self.root = tree
        self.board = board
        self.config = config or HealthConfig()
        self.emit = emit or logger.info
        self.metrics = metrics
        self._timers = ActorTimers(self.actor_ref)
        self._sequence = 0
        self._last_log_at: float | None = None
        self._restarts_seen: dict[str, int] = {}
        self._misses: dict[tuple[int, int], int] = {}  # (slot uid, incarnation) -> in a row

    def on_start(self) -> None:
        # The first round right away, so khipu_health shows the tree as soon as the node is up.
        self.actor_ref.tell(HealthTick())
        self._timers.every(self.config.heartbeat_interval, HealthTick())

    def on_stop(self) -> None:
        self._timers.cancel_all()

    def on_failure(self, *_exc_info: Any) -> None:
        self._timers.cancel_all()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, HealthTick):
            self.check_tree()
            now = time.monotonic()
            # Ticks drift by a few milliseconds: half a tick of slack keeps one line per interval.
            due = self.config.log_interval - self.config.heartbeat_interval / 2
            if self._last_log_at is None or now - self._last_log_at >= due:
                self._last_log_at = now
                self.log_health()
            return None
        return super().on_receive(message)

    def check_tree(self) -> list[ActorHealth]:
        """Heartbeat every running actor at once, wait for answers up to the timeout, update the
        board, and ask for stalled actors to be restarted. Returns what it found."""
        self._sequence += 1
        own = self.context.slot if self.context is not None else None
        pending: list[tuple[ChildSlot, pykka.Future[Any] | None]] = []
        for slot in self.root.walk():
            runtime = slot.runtime
            future = None
            if slot is own:
                pass  # answers for itself below, without a message to its own mailbox
            elif slot.state is ChildState.RUNNING and runtime is not None:
                try:
                    future = runtime.heartbeat(Heartbeat(self._sequence))
                except pykka.ActorDeadError:
                    future = None
            pending.append((slot, future))
        deadline = time.monotonic() + self.config.heartbeat_timeout
        found = [
            self._own_health() if slot is own else self._collect(slot, future, deadline)
            for slot, future in pending
        ]
        current = {(slot.uid, slot.incarnation) for slot, _ in pending}
        self._misses = {key: n for key, n in self._misses.items() if key in current}
        self.board.publish(found)
        if self.metrics is not None:
            self._feed_metrics(found)
        return found

    def log_health(self) -> list[str]:
        """Emit one health line per actor on the board; returns the lines."""
        now = self.board.clock()
        lines = [format_health_line(h, self.config.log_format, now) for h in self.board.all()]
        for line in lines:
            self.emit(line)
        return lines

    # -- helpers -------------------------------------------------------------------------------

    def _collect(
        self, slot: ChildSlot, future: pykka.Future[Any] | None, deadline: float
    ) -> ActorHealth:
        runtime = slot.runtime
        previous = self.board.get(self._name(slot))
        processed = previous.processed if previous is not None else None
        last_heartbeat_at = previous.last_heartbeat_at if previous is not None else None
        state = slot.state.value
        key = (slot.uid, slot.incarnation)
        if future is not None:
            try:
                reply = future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                self._misses[key] = self._misses.get(key, 0) + 1
                if self._misses[key] >= self.config.stall_misses:
                    state = ChildState.STALLED.value
                    self._stalled(slot)
            except Exception:
                pass  # died meanwhile: its supervisor hears of it and restarts it
            else:
                self._misses.pop(key, None)
                last_heartbeat_at = self.board.clock()
                if isinstance(reply, HealthReport):
                    processed = reply.processed
        elif runtime is not None and slot.state is ChildState.RUNNING and runtime.is_alive():
            last_heartbeat_at = self.board.clock()  # a process: alive is all it can say
            counted = runtime.processed()
            processed = counted if counted is not None else processed
        health = ActorHealth(
            actor=self._name(slot),
            kind=runtime.kind if runtime is not None else "actor",
            state=state,
            mailbox=runtime.mailbox_depth() if runtime is not None else None,
            processed=processed,
            restarts=slot.restarts,
            incarnation=slot.incarnation,
            last_error=slot.last_error,
            last_error_at=slot.last_error_at,
            last_heartbeat_at=last_heartbeat_at,
            pid=runtime.pid() if runtime is not None else None,
            missed_heartbeats=self._misses.get(key, 0),
            activity=runtime.activity() if runtime is not None else None,
        )
        return health

    def _own_health(self) -> ActorHealth:
        assert self.context is not None
        slot = self.context.slot
        return ActorHealth(
            actor=self._name(slot),
            kind="actor",
            state=ChildState.RUNNING.value,
            mailbox=self.actor_inbox.qsize() if hasattr(self.actor_inbox, "qsize") else None,
            processed=self.processed,
            restarts=slot.restarts,
            incarnation=slot.incarnation,
            last_error=slot.last_error,
            last_error_at=slot.last_error_at,
            last_heartbeat_at=self.board.clock(),
        )

    def _stalled(self, slot: ChildSlot) -> None:
        timeout = self.config.heartbeat_timeout
        misses = self.config.stall_misses
        logger.warning("%s missed %d heartbeat(s) of %gs in a row", slot.path, misses, timeout)
        if self.config.restart_stalled and slot.owner is not None:
            with contextlib.suppress(pykka.ActorDeadError):  # its supervisor is stopping
                slot.owner.tell(RestartStalled(slot.name, slot.incarnation, timeout, slot.uid))

    def _name(self, slot: ChildSlot) -> str:
        return slot.path.removeprefix(self.root.path + "/")

    def _feed_metrics(self, found: list[ActorHealth]) -> None:
        assert self.metrics is not None
        for health in found:
            seen = self._restarts_seen.get(health.actor, 0)
            if health.restarts > seen:
                self.metrics.actor_restarts.labels(actor=health.actor).inc(health.restarts - seen)
            self._restarts_seen[health.actor] = health.restarts
            if health.mailbox is not None:
                self.metrics.actor_mailbox.labels(actor=health.actor).set(health.mailbox)
            for state in ChildState:
                up = 1 if state.value == health.state else 0
                self.metrics.actor_state.labels(actor=health.actor, state=state.value).set(up)


def iso_time(ts: float) -> str:
    """UTC ISO-8601 with milliseconds, e.g. '2026-11-21T20:00:00.123Z'."""
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_health_line(health: ActorHealth, log_format: LogFormat, now: float) -> str:
    """One health line: logfmt (`ts=... level=info actor=StorageWriter state=running ...`) or a
    JSON object with the same keys."""
    level = "info" if health.state == ChildState.RUNNING.value else "warn"
    fields: dict[str, Any] = {
        "ts": iso_time(now),
        "level": level,
        "actor": health.actor,
        "state": health.state,
        "mailbox": health.mailbox,
        "processed": health.processed,
        "restarts": health.restarts,
        "last_error": health.last_error,
    }
    if health.last_error_at is not None:
        fields["last_error_at"] = iso_time(health.last_error_at)
    if health.pid is not None:
        fields["pid"] = health.pid
    if health.activity is not None:
        fields["activity"] = health.activity
    if health.missed_heartbeats:
        fields["missed_heartbeats"] = health.missed_heartbeats
    if log_format == "json":
        return json.dumps(fields, separators=(",", ":"))
    return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())


def logfmt_value(value: Any) -> str:
    """A logfmt value: bare when it is a plain token, else double-quoted with escapes."""
    if value is None:
        return '""'
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'
