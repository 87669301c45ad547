"""Which nodes to dial next: static nodes first, then nodes discovery found, within the dialled
share of `--maxpeers`, skipping connected, bad-listed and recently failed nodes.

A node whose dial failed waits `backoff.delay(failures)` before it is tried again (exponential,
capped); any dial, good or bad, holds the node back for `redial_after` seconds, as geth's dial
history does, so a node that keeps hanging up on us is not dialled in a loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from khipu.actors.backoff import ExponentialBackoff
from khipu.p2p.keys import Enode
from khipu.p2p.peers.roster import Direction, PeerRoster

DEFAULT_REDIAL_AFTER = 30.0


def default_dial_backoff() -> ExponentialBackoff:
    """5 s after a first failure, doubling up to 5 minutes."""
    return ExponentialBackoff(initial=5.0, maximum=300.0, jitter=0.2)


@dataclass
class DialPlan:
    """Chooses dials and remembers their outcomes (on a monotonic `clock`)."""

    backoff: ExponentialBackoff = field(default_factory=default_dial_backoff)
    redial_after: float = DEFAULT_REDIAL_AFTER
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    dialling: set[bytes] = field(default_factory=set)
    _failures: dict[bytes, int] = field(default_factory=dict)
    _not_before: dict[bytes, float] = field(default_factory=dict)

    def choose(
        self, roster: PeerRoster, static: Iterable[Enode], discovered: Iterable[Enode]
    ) -> list[Enode]:
        """The nodes to dial now (marked as dialling): as many as free outbound slots allow,
        static ones first, discovered ones in random order."""
        limits = roster.limits
        dialled = roster.count(Direction.OUTBOUND) + len(self.dialling)
        free = min(
            limits.max_dialled - dialled,
            limits.max_peers - len(roster.connections) - len(self.dialling),
        )
        if free <= 0:
            return []
        found = list(discovered)
        self.rng.shuffle(found)
        chosen: list[Enode] = []
        seen: set[bytes] = set()
        for enode in [*static, *found]:
            if len(chosen) >= free:
                break
            if enode.node_id in seen or not self._may_dial(roster, enode.node_id):
                continue
            seen.add(enode.node_id)
            chosen.append(enode)
        for enode in chosen:
            self.dialling.add(enode.node_id)
            self._not_before[enode.node_id] = self.clock() + self.redial_after
        return chosen

    def _may_dial(self, roster: PeerRoster, node_id: bytes) -> bool:
        if node_id == roster.local_id or node_id in self.dialling:
            return False
        if roster.by_node(node_id) is not None or node_id in roster.bad_list:
            return False
        return self._not_before.get(node_id, 0.0) <= self.clock()

    def failed(self, node_id: bytes) -> float:
        """A dial to `node_id` failed; return the seconds until it may be tried again."""
        self.dialling.discard(node_id)
        failures = self._failures.get(node_id, 0)
        self._failures[node_id] = failures + 1
        delay = max(self.backoff.delay(failures), self.redial_after)
        self._not_before[node_id] = self.clock() + delay
        return delay

    def connected(self, node_id: bytes) -> None:
        """A dial to `node_id` reached Hello (whatever became of it next): failures forgotten."""
        self.dialling.discard(node_id)
        self._failures.pop(node_id, None)

    def ended(self, node_id: bytes) -> None:
        """A connection to `node_id` ended: hold off redialling it for `redial_after`."""
        self.dialling.discard(node_id)
        self._not_before[node_id] = max(
            self._not_before.get(node_id, 0.0), self.clock() + self.redial_after
        )

    def failures(self, node_id: bytes) -> int:
        """Failed dials to `node_id` since its last good one."""
        return self._failures.get(node_id, 0)
