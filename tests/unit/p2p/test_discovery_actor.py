"""The Discovery actor against a scripted host: a round that fails or hangs restarts it, and each
incarnation closes discv4 before its successor opens it again."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from khipu.actors import SupervisionTree
from khipu.p2p.keys import Enode
from khipu.p2p.peers.board import PeerBoard
from khipu.p2p.peers.discovery_actor import DiscoveryRound, DiscoverySettings, discovery_spec


class ScriptedHost:
    """A DiscoveryHost whose rounds end as `outcome(n)` says for the n-th round (1-based):
    an int is the table size, an exception the round's error, None a round that never ends."""

    def __init__(self, outcome: Callable[[int], int | BaseException | None]) -> None:
        self.outcome = outcome
        self.calls: list[str] = []
        self.futures: list[concurrent.futures.Future[int]] = []
        self._lock = threading.Lock()

    @property
    def bootnodes(self) -> tuple[Enode, ...]:
        return ()

    def open_discovery(self) -> None:
        with self._lock:
            self.calls.append("open")

    def close_discovery(self) -> None:
        with self._lock:
            self.calls.append("close")

    def discovery_round(self, round_of: DiscoveryRound) -> concurrent.futures.Future[int]:
        with self._lock:
            self.calls.append("round")
            future: concurrent.futures.Future[int] = concurrent.futures.Future()
            self.futures.append(future)
            result = self.outcome(len(self.futures))
        if isinstance(result, BaseException):
            future.set_exception(result)
        elif result is not None:
            future.set_result(result)
        return future


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def trees() -> Iterator[list[SupervisionTree]]:
    started: list[SupervisionTree] = []
    yield started
    for tree in started:
        tree.shutdown("test over", timeout=10)


def run(host: ScriptedHost, settings: DiscoverySettings, trees: list[SupervisionTree]) -> PeerBoard:
    board = PeerBoard()
    trees.append(SupervisionTree("Node", [discovery_spec(host, board, settings)]))
    return board


def test_a_round_that_raises_restarts_the_actor_which_reopens_discovery(
    trees: list[SupervisionTree],
) -> None:
    host = ScriptedHost(lambda n: RuntimeError("socket gone") if n == 2 else 5)
    board = run(host, DiscoverySettings(refresh_interval=60, revalidate_interval=0.05), trees)

    def second_incarnation_ran_a_round() -> bool:
        facts = board.summary().get("discovery") or {}
        return facts.get("incarnation") == 2 and facts.get("rounds", 0) >= 1

    wait_for(second_incarnation_ran_a_round, "the restarted actor's first round")
    assert host.calls[:5] == ["open", "round", "round", "close", "open"]
    assert board.summary()["discovery"]["table"] == 5


def test_a_round_that_never_ends_fails_the_actor_after_the_round_timeout(
    trees: list[SupervisionTree],
) -> None:
    host = ScriptedHost(lambda n: None if n == 1 else 3)
    settings = DiscoverySettings(refresh_interval=60, revalidate_interval=0.05, round_timeout=0.2)
    board = run(host, settings, trees)
    wait_for(lambda: host.calls.count("open") == 2, "the restart after the stalled round")
    assert host.futures[0].cancelled()  # the dead incarnation's round was given up
    assert host.calls[:4] == ["open", "round", "close", "open"]
    wait_for(lambda: (board.summary().get("discovery") or {}).get("table") == 3, "a later round")
