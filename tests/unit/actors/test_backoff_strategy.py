"""Backoff delays, the restart window, deciders and spec validation."""

from __future__ import annotations

import random

import pytest

from khipu.actors import ChildSpec, Directive, ExponentialBackoff, decider_from_map
from khipu.actors.backoff import RestartWindow
from khipu.actors.strategy import SupervisionStrategy


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_exponentially_up_to_the_cap_without_jitter() -> None:
    backoff = ExponentialBackoff(initial=0.5, maximum=5.0, multiplier=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(5)] == [0.5, 1.5, 4.5, 5.0, 5.0]


def test_jitter_only_lengthens_and_keeps_the_series_increasing() -> None:
    backoff = ExponentialBackoff(
        initial=1.0, maximum=1e9, multiplier=2.0, jitter=0.5, rng=random.Random(1)
    )
    delays = [backoff.delay(n) for n in range(12)]
    for n, delay in enumerate(delays):
        assert 2.0**n <= delay < 2.0**n * 1.5
    assert delays == sorted(delays)


def test_seeded_backoffs_give_the_same_delays() -> None:
    def series(seed: int) -> list[float]:
        backoff = ExponentialBackoff(jitter=0.3, rng=random.Random(seed))
        return [backoff.delay(n) for n in range(6)]

    assert series(42) == series(42)
    assert series(42) != series(43)


def test_backoff_survives_a_very_long_crash_loop() -> None:
    assert ExponentialBackoff(initial=1, maximum=60, jitter=0).delay(10_000) == 60


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1}, {"initial": 5, "maximum": 1}, {"multiplier": 0.5}, {"jitter": 1.0}],
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ExponentialBackoff(**kwargs)  # type: ignore[arg-type]


def test_restart_window_counts_only_recent_restarts() -> None:
    clock = FakeClock()
    window = RestartWindow(max_restarts=2, within_seconds=10.0, clock=clock)
    assert window.allows_another()
    window.record()
    clock.now += 4
    window.record()
    assert window.recent() == 2 and not window.allows_another()
    clock.now += 7  # the first restart is now 11 s old
    assert window.recent() == 1 and window.allows_another()


def test_decider_prefers_the_most_specific_exception_class() -> None:
    class StoreError(Exception):
        pass

    class StoreCorrupted(StoreError):
        pass

    decide = decider_from_map(
        {
            Exception: Directive.RESTART,
            StoreError: Directive.RESUME,
            StoreCorrupted: Directive.ESCALATE,
        },
        default=Directive.STOP,
    )
    assert decide(StoreCorrupted("segment 3")) is Directive.ESCALATE
    assert decide(StoreError("busy")) is Directive.RESUME
    assert decide(ValueError("x")) is Directive.RESTART
    assert decide(KeyboardInterrupt()) is Directive.STOP


def test_specs_and_strategies_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="name"):
        ChildSpec("a/b", lambda ctx: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="max_restarts"):
        SupervisionStrategy(max_restarts=-1)
    with pytest.raises(ValueError, match="within_seconds"):
        SupervisionStrategy(within_seconds=0)
