"""Delays between restarts (exponential with jitter) and the sliding restart window."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExponentialBackoff:
    """`initial * multiplier**attempt`, capped at `maximum`, stretched by up to `jitter` (fraction).

    The jitter only lengthens a delay (`base * (1 + jitter * u)`, u in [0, 1)), so while below the
    cap the delays strictly increase whenever `jitter < multiplier - 1`: restarts of a crash loop
    spread out instead of hammering the failing resource. Pass a seeded `random.Random` as `rng`
    for reproducible delays.
    """

    initial: float = 0.1
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError(f"need 0 <= initial <= maximum, got {self.initial}, {self.maximum}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number `attempt` (0 for the first) of a recent series."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # Cap the exponent before raising so a long crash loop cannot overflow a float.
        base = self.initial * self.multiplier ** min(attempt, 64)
        base = min(base, self.maximum)
        return base * (1.0 + self.jitter * self.rng.random())


@dataclass
class RestartWindow:
    """The restarts of one child within the last `within_seconds` on a monotonic `clock`."""

    max_restarts: int
    within_seconds: float
    clock: Callable[[], float]
    _times: deque[float] = field(default_factory=deque)

    def _forget_old(self) -> None:
        horizon = self.clock() - self.within_seconds
        while self._times and self._times[0] < horizon:
            self._times.popleft()

    def recent(self) -> int:
        """How many restarts happened within the window, up to now."""
        self._forget_old()
        return len(self._times)

    def allows_another(self) -> bool:
        """True while one more restart stays within `max_restarts` for the window."""
        return self.recent() < self.max_restarts

    def record(self) -> None:
        """Count a restart happening now."""
        self._forget_old()
        self._times.append(self.clock())
