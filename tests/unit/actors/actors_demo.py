"""A small demo tree for the actor tests: counters that keep their state in a store, actors that
crash or hang on request, and a recorder of supervision events."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
from pykka.messages import ProxyCall

from khipu.actors import (
    ChildContext,
    ExponentialBackoff,
    SupervisedActor,
    SupervisionStrategy,
)
from khipu.actors.strategy import Decider, StrategyKind, always_restart

WAIT = 5.0  # generous bound for anything the tests wait for; never a timing assertion


class Boom(Exception):
    """The failure the demo actors raise on request."""


class Store:
    """Stands in for Kesque: what an actor persisted survives its restarts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def get(self, key: str) -> int:
        with self._lock:
            return self._values.get(key, 0)

    def put(self, key: str, value: int) -> None:
        with self._lock:
            self._values[key] = value


class Counter(SupervisedActor):
    """Counts in the store; `unsaved` lives only in memory and must be 0 after a restart."""

    def __init__(self, context: ChildContext | None, store: Store, key: str) -> None:
        super().__init__(context)
        self.store = store
        self.key = key
        self.count = store.get(key)  # rebuilt from storage, never from a dead incarnation
        self.unsaved = 0
        self.received: list[Any] = []

    def increment(self) -> int:
        self.count += 1
        self.unsaved += 1
        self.store.put(self.key, self.count)
        return self.count

    def get(self) -> int:
        return self.count

    def memory(self) -> int:
        return self.unsaved

    def fail(self, text: str = "asked to fail") -> None:
        raise Boom(text)

    def hang(self, release: threading.Event) -> None:
        release.wait(WAIT * 2)

    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise Boom("told to fail")
        self.received.append(message)
        return None

    def seen(self) -> list[Any]:
        return list(self.received)


class CrashOnStart(SupervisedActor):
    """Fails in on_start every time: a crash loop."""

    def on_start(self) -> None:
        raise Boom(f"{self.actor_path} cannot start (incarnation {self.incarnation})")


class PlainActor(pykka.ThreadingActor):
    """A plain Pykka actor (not a SupervisedActor): a failing tell kills it without a report."""

    use_daemon_thread = True

    def on_receive(self, message: Any) -> Any:
        if message == "explode":
            raise Boom("plain actor exploded")
        return "pong"


def sleep_forever() -> None:
    """Target of a supervised worker process."""
    time.sleep(3600)


def fast_strategy(
    kind: StrategyKind = StrategyKind.ONE_FOR_ONE,
    decider: Decider = always_restart,
    max_restarts: int = 3,
    seed: int = 7,
) -> SupervisionStrategy:
    """Short backoff (10 ms doubling, 10% jitter from a seeded RNG) to keep tests quick."""
    backoff = ExponentialBackoff(
        initial=0.01, maximum=1.0, multiplier=2.0, jitter=0.1, rng=random.Random(seed)
    )
    return SupervisionStrategy(
        kind=kind, decider=decider, max_restarts=max_restarts, within_seconds=60.0, backoff=backoff
    )


class EventLog:
    """Collects supervision events; tests wait for the one they expect."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, kind: type[Any]) -> list[Any]:
        with self._changed:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        """The first event matching `predicate`; AssertionError if none comes within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching event within {timeout}s in {self.events}")
                self._changed.wait(remaining)

    def wait_count(self, kind: type[Any], count: int, timeout: float = WAIT) -> list[Any]:
        """Wait until `count` events of `kind` have been seen; return them."""
        self.wait_for(
            lambda _e: len([e for e in self.events if isinstance(e, kind)]) >= count, timeout
        )
        return self.of(kind)


def hang_call(release: threading.Event) -> ProxyCall:
    """The message that keeps a Counter busy until `release` is set (a stuck handler)."""
    return ProxyCall(attr_path=("hang",), args=(release,), kwargs={})


def get_call() -> ProxyCall:
    """The message asking a Counter for its count."""
    return ProxyCall(attr_path=("get",), args=(), kwargs={})
