"""The commit file (`DATADIR/kesque/COMMIT`): what every reader may see.

A small JSON document holding, per topic, the number of segments, the committed end of the last
one, the next offset, the record count and the hash index generation, plus a CRC32C of the rest.
The file has two slots of SLOT_BYTES, each holding such a document padded with zero bytes;
commit n is written into slot n % 2, over commit n - 2, and made durable with one fdatasync
(the file never changes size) run side by side with the fsyncs of its logs, so a commit waits
for one round of flushes. Should a crash come before all of them are done, the slot may be
durable while some of its records are not: the commit names where its appended bytes begin and
their CRC32C (`appended_*`), the writer checks them at open and falls back to the other slot,
commit n - 1, whose flushes all ended before commit n began (commit_recovery.py). Readers never
see such a commit: they take the newest valid slot not past the sequence the writer published
through the commit counter after the flushes (commit_counter.py). A reader that catches a slot
half-written (its CRC fails) takes the other one. (Stores made before the slots hold one document
replaced by write-temp + fsync + rename; a writer converts the file when it opens the store.)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from khipu.storage.kesque import files
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.errors import StoreCorrupted

COMMIT_FILE_NAME = "COMMIT"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2 adds the `appended_*` fields (a commit's slot is made durable beside its logs)."""
SLOT_BYTES = 16384


@dataclass(frozen=True)
class TopicState:
    """The committed extent of one topic."""

    segments: int = 0
    """Segment files in use (ordinals 0 .. segments-1, in base-offset order)."""
    end: int = 0
    """Committed bytes of the last segment."""
    next_offset: int = 0
    """The offset of the next record (number topics: one past the last block number)."""
    records: int = 0
    index_generation: int = 0
    """Hash topics: the generation of the hash index file to use (0: none yet)."""
    index_used: int = 0
    """Hash topics: non-empty slots of that index."""
    index_slots: int = 0
    overwrites: int = 0
    """Bumped by a commit that superseded or deleted a key, so readers drop their caches."""
    superseded: int = -1
    """Hash topics: 1 once any key was put again with another value or deleted (the index then
    may hold several entries of one key), 0 if never, -1 unknown (a commit file written before
    this field: then `overwrites` tells)."""

    replay_segment: int = -1
    """Hash topics: the segment where the records begin whose index entries may not be durable
    yet (the index is fsynced every `index_sync_bytes`, not every commit); -1: none."""
    replay_position: int = 0
    """... and the byte in it where they begin."""

    appended_in: int = -1
    """The sequence of the last commit that appended records to this topic (-1: none, or a
    commit file written before this field). Only the newest commit's appended bytes can be
    missing after a crash (its slot is made durable beside its logs, see store.py); the writer
    checks them at open with the three fields below."""
    appended_segment: int = 0
    """The segment where that commit's appended bytes begin ..."""
    appended_position: int = 0
    """... the byte in it where they begin (they end at `segments`/`end`) ..."""
    appended_crc: int = 0
    """... and the CRC32C of all of them, in log order across segments."""

    @property
    def replay_from(self) -> tuple[int, int] | None:
        """(segment, position) of the first record a writer re-enters into the index at open,
        or None."""
        if self.replay_segment < 0:
            return None
        return self.replay_segment, self.replay_position

    @property
    def may_have_superseded(self) -> bool:
        """Whether some key may have more than one index entry (read paths that stop at the
        first matching entry are then wrong)."""
        return self.superseded > 0 or (self.superseded < 0 and self.overwrites > 0)

    def with_changes(self, **changes: int) -> TopicState:
        return replace(self, **changes)


@dataclass(frozen=True)
class CommitState:
    """Everything one commit made visible."""

    sequence: int = 0
    topics: dict[str, TopicState] = field(default_factory=dict)

    def topic(self, name: str) -> TopicState:
        return self.topics.get(name, TopicState())


def encode_commit(state: CommitState) -> bytes:
    body = json.dumps(
        {
            "version": FORMAT_VERSION,
            "sequence": state.sequence,
            "topics": {name: dict(vars(topic)) for name, topic in sorted(state.topics.items())},
        },
        sort_keys=True,
    )
    return json.dumps({"crc32c": crc32c(body.encode()), "body": body}).encode() + b"\n"


def decode_commit(data: bytes, path: Path) -> CommitState:
    """Parse a commit file's bytes; raises StoreCorrupted when they are not a valid commit."""
    try:
        outer = json.loads(data)
        body = outer["body"]
        if crc32c(body.encode()) != outer["crc32c"]:
            raise StoreCorrupted(path, 0, "commit file CRC32C mismatch")
        document = json.loads(body)
        if document["version"] not in READABLE_VERSIONS:
            raise StoreCorrupted(path, 0, f"unknown commit format {document['version']}")
        topics = {name: TopicState(**fields) for name, fields in document["topics"].items()}
        return CommitState(int(document["sequence"]), topics)
    except (ValueError, KeyError, TypeError) as error:
        raise StoreCorrupted(path, 0, f"unreadable commit file: {error}") from error


def decode_commit_file(data: bytes, path: Path) -> CommitState:
    """The newest valid commit in a commit file's bytes, of either layout (see the module
    docstring). Raises StoreCorrupted when there is none."""
    return commit_candidates(data, path)[0]


def read_published(path: Path, published: Callable[[], int | None]) -> tuple[CommitState, bytes]:
    """A reader's commit: the newest one in the commit file at `path` not newer than
    `published()` (the commit counter's published sequence; None: the newest), and the file's
    bytes. The writer may fill both slots between the two reads, so it reads again (up to 100
    times, 1 ms apart). Raises FileNotFoundError, StoreCorrupted."""
    for _ in range(100):
        sequence = published()
        data = path.read_bytes()
        for state in commit_candidates(data, path):
            if sequence is None or state.sequence <= sequence:
                return state, data
        time.sleep(0.001)
    raise StoreCorrupted(path, 0, "no commit slot holds the published commit")


def commit_candidates(data: bytes, path: Path) -> list[CommitState]:
    """The valid commits in a commit file's bytes, newest first (one for the single-document
    layout). Raises StoreCorrupted when there is none."""
    if len(data) != 2 * SLOT_BYTES:
        return [decode_commit(data, path)]  # the single-document layout of older stores
    found: list[CommitState] = []
    problem = "both commit slots are empty"
    for slot in (0, 1):
        raw = data[slot * SLOT_BYTES : (slot + 1) * SLOT_BYTES].rstrip(b"\0")
        if not raw:
            continue
        try:
            found.append(decode_commit(raw, path))
        except StoreCorrupted as error:  # a torn slot: the writer was writing it
            problem = error.reason
    if not found:
        raise StoreCorrupted(path, 0, problem)
    return sorted(found, key=lambda state: state.sequence, reverse=True)


def read_commit(path: Path) -> tuple[CommitState, bytes]:
    """The commit state at `path` and the raw bytes of the file it was parsed from.

    Raises FileNotFoundError when there is none, StoreCorrupted when it is damaged.
    """
    data = path.read_bytes()
    return decode_commit_file(data, path), data


def slotted_file(state: CommitState) -> bytes:
    """A whole commit file of the slotted layout holding `state` (in the slot of its
    sequence's parity). Raises ValueError if the commit does not fit a slot."""
    slots = [bytes(SLOT_BYTES), bytes(SLOT_BYTES)]
    slots[state.sequence % 2] = _slot_bytes(state)
    return b"".join(slots)


def _slot_bytes(state: CommitState) -> bytes:
    encoded = encode_commit(state)
    if len(encoded) > SLOT_BYTES:
        raise ValueError(f"a commit of {len(encoded)} bytes does not fit a {SLOT_BYTES}-byte slot")
    return encoded.ljust(SLOT_BYTES, b"\0")


def write_commit(path: Path, state: CommitState, durable: bool) -> None:
    """Replace the commit file with one holding `state` (write-temp + fsync + rename: for new
    stores, repair, and converting an older store's file). Raises OSError."""
    files.write_file_atomically(path, slotted_file(state), durable)


class CommitSlots:
    """The writer's open commit file: a commit is published by overwriting one slot."""

    def __init__(self, path: Path) -> None:
        """Open the slotted commit file at `path` (write_commit made it). Raises OSError."""
        self.path = path
        self._fd = os.open(path, os.O_RDWR)

    def write(self, state: CommitState, slot_of: int | None = None) -> None:
        """Overwrite the slot of `state.sequence`'s parity (the one not holding the last
        commit; or that of sequence `slot_of`, to void a commit that failed). Readers take it
        once the commit counter publishes its sequence. Raises OSError, ValueError if too
        large."""
        slot = state.sequence if slot_of is None else slot_of
        with files.naming(self.path):
            files.write_at(self._fd, _slot_bytes(state), (slot % 2) * SLOT_BYTES)

    def make_durable(self) -> None:
        """fdatasync the file (its size never changes, so no metadata is due). Raises OSError."""
        with files.naming(self.path):
            files.sync_data(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
