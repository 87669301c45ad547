"""Timers for actors: Pykka has none, so a timer thread tells the actor a message when due."""

from __future__ import annotations

import threading
from typing import Any

import pykka


class ActorTimers:
    """One-shot and repeating messages to an actor, all cancelled together when it stops.

    The message is told, never run in the timer thread, so the actor handles it in its own
    thread like any other message. A tell to an actor that died meanwhile is dropped on purpose:
    timer messages are the actor's own reminders and mean nothing to a successor.
    """

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self._ref = ref
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._cancelled = False

    def once(self, delay: float, message: Any) -> None:
        """Tell `message` after `delay` seconds."""
        self._start(delay, message, repeat=False)

    def every(self, interval: float, message: Any) -> None:
        """Tell `message` every `interval` seconds until `cancel_all`."""
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._start(interval, message, repeat=True)

    def cancel_all(self) -> None:
        """Cancel every pending timer; later `once`/`every` calls do nothing."""
        with self._lock:
            self._cancelled = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()

    def _start(self, delay: float, message: Any, repeat: bool) -> None:
        def fire() -> None:
            with self._lock:
                if self._cancelled:
                    return
            try:
                self._ref.tell(message)
            except pykka.ActorDeadError:
                return
            if repeat:
                self._start(delay, message, repeat=True)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            if self._cancelled:
                return
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()
