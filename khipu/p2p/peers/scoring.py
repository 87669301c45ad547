"""Peer scoring and the bad list: what a peer did wrong costs points; a peer whose score falls to
the threshold is disconnected and remembered for a while, neither dialled nor accepted.

Scores live only while a peer is connected (a reconnecting peer starts afresh); the bad list
outlives connections and, given a file, restarts (khipu.p2p.peers.bad_list_file). Both take a
monotonic `clock` so tests control time; the file holds wall-clock times (`wall_clock`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from khipu.p2p.peers import bad_list_file
from khipu.p2p.peers.bad_list_file import BadListFileInvalid, StoredBadPeer

log = logging.getLogger("khipu.p2p")

DEFAULT_THRESHOLD = -100
DEFAULT_BAD_PEER_EXPIRY = 3600.0  # seconds a dropped peer stays refused
MAX_SCORE = 50  # good answers earn credit up to here, so an old peer survives a slow spell


class Offence(enum.Enum):
    """What a peer did wrong, from mild to unforgivable."""

    SLOW = "slow"  # a request timed out
    USELESS = "useless"  # an empty answer for what it claimed to have (its own head)
    LYING = "lying"  # an answer that fails validation: unchained headers, bodies off their roots
    MALFORMED = "malformed"  # broke the protocol (malformed, oversized); disconnected already


# A lie or a protocol breach drops any peer whatever credit it earned (more than MAX_SCORE plus
# the distance to the threshold); slowness and useless answers wear a peer down over time.
PENALTIES: dict[Offence, int] = {
    Offence.SLOW: 20,
    Offence.USELESS: 25,
    Offence.LYING: 200,
    Offence.MALFORMED: 200,
}
GOOD_ANSWER_CREDIT = 1


@dataclass
class PeerScore:
    """One connected peer's score: 0 to start, + for good answers, - per offence."""

    node_id: bytes
    threshold: int = DEFAULT_THRESHOLD
    value: int = 0
    last_offence: Offence | None = None
    last_detail: str = ""

    def penalise(self, offence: Offence, detail: str = "") -> bool:
        """Lower the score for `offence`; True when it has reached the threshold (drop it)."""
        self.value -= PENALTIES[offence]
        self.last_offence, self.last_detail = offence, detail
        return self.value <= self.threshold

    def reward(self) -> None:
        """A useful, valid answer: a point back, up to MAX_SCORE."""
        self.value = min(MAX_SCORE, self.value + GOOD_ANSWER_CREDIT)

    @property
    def dropped(self) -> bool:
        """True once the score is at or below the threshold."""
        return self.value <= self.threshold


@dataclass(frozen=True)
class BadListEntry:
    """Why and until when (on the list's clock) a node is refused."""

    node_id: bytes
    reason: str
    until: float
    listed_at: float = 0.0  # wall-clock seconds when it was (last) bad-listed


class BadList:
    """Nodes refused for `expiry` seconds after they were dropped for their score.

    With a `path`, the list is read from that file at start (entries past the configured
    expiry left out) and written back on every addition, so it survives restarts. A file that
    cannot be read is logged and set aside (renamed `*.invalid`); the list starts empty then.
    """

    def __init__(
        self,
        expiry: float = DEFAULT_BAD_PEER_EXPIRY,
        clock: Callable[[], float] = time.monotonic,
        path: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises ValueError for a negative expiry."""
        if expiry < 0:
            raise ValueError(f"bad-peer expiry must be >= 0 seconds, got {expiry}")
        self.expiry = expiry
        self.clock = clock
        self.wall_clock = wall_clock
        self.path = path
        self._entries: dict[bytes, BadListEntry] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            stored = bad_list_file.load(path)
        except BadListFileInvalid as exc:
            aside = path.with_name(path.name + ".invalid")
            log.warning("bad list starts empty: %s (set aside as %s)", exc, aside)
            try:
                path.replace(aside)
            except OSError as error:
                log.warning("cannot set %s aside: %r", path, error)
            return
        now, wall_now = self.clock(), self.wall_clock()
        for peer in stored:
            remaining = peer.listed_at + self.expiry - wall_now
            if remaining > 0:
                self._entries[peer.node_id] = BadListEntry(
                    peer.node_id, peer.reason, now + remaining, peer.listed_at
                )

    def _save(self) -> None:
        if self.path is None:
            return
        peers = [StoredBadPeer(e.node_id, e.reason, e.listed_at) for e in self.entries()]
        try:
            bad_list_file.save(self.path, peers)
        except OSError as exc:  # the list in memory still refuses them until we stop
            log.warning("cannot write the bad list to %s: %r", self.path, exc)

    def add(self, node_id: bytes, reason: str) -> BadListEntry:
        """Refuse `node_id` from now until `expiry` seconds later (a repeat extends it); with a
        file, written there before this returns."""
        entry = BadListEntry(node_id, reason, self.clock() + self.expiry, self.wall_clock())
        self._entries[node_id] = entry
        self._save()
        return entry

    def get(self, node_id: bytes) -> BadListEntry | None:
        """The entry refusing `node_id` now, or None (an expired entry is forgotten here)."""
        entry = self._entries.get(node_id)
        if entry is not None and entry.until <= self.clock():
            del self._entries[node_id]
            return None
        return entry

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and self.get(node_id) is not None

    def entries(self) -> list[BadListEntry]:
        """The entries still in force, soonest expiry first."""
        now = self.clock()
        for node_id in [n for n, e in self._entries.items() if e.until <= now]:
            del self._entries[node_id]
        return sorted(self._entries.values(), key=lambda entry: entry.until)

    def __len__(self) -> int:
        return len(self.entries())
