"""The commit file (`DATADIR/kesque/COMMIT`): what every reader may see.

A small JSON document holding, per topic, the number of segments, the committed end of the last
one, the next offset, the record count and the hash index generation, plus a CRC32C of the rest.
The file has two slots of SLOT_BYTES, each holding such a document padded with zero bytes;
commit n is written into slot n % 2, over commit n - 2, and made durable with one fdatasync
(the file never changes size), after the logs and indexes are durable. The other slot keeps the
last commit whole meanwhile, so a reader that catches a slot half-written (its CRC fails) or a
writer that crashed while writing it finds the previous commit; the newest valid slot is the
commit. Nothing past it exists for a reader. (Stores made before the slots hold one document
replaced by write-temp + fsync + rename; a writer converts the file when it opens the store.)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from khipu.storage.kesque import files
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.errors import StoreCorrupted

COMMIT_FILE_NAME = "COMMIT"
FORMAT_VERSION = 1
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
    yet (the index is msynced every `index_sync_bytes`, not every commit); -1: none."""
    replay_position: int = 0
    """... and the byte in it where they begin."""

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
        if document["version"] != FORMAT_VERSION:
            raise StoreCorrupted(path, 0, f"unknown commit format {document['version']}")
        topics = {name: TopicState(**fields) for name, fields in document["topics"].items()}
        return CommitState(int(document["sequence"]), topics)
    except (ValueError, KeyError, TypeError) as error:
        raise StoreCorrupted(path, 0, f"unreadable commit file: {error}") from error


def decode_commit_file(data: bytes, path: Path) -> CommitState:
    """The newest valid commit in a commit file's bytes, of either layout (see the module
    docstring). Raises StoreCorrupted when no slot holds a valid commit."""
    if len(data) != 2 * SLOT_BYTES:
        return decode_commit(data, path)  # the single-document layout of older stores
    newest: CommitState | None = None
    problem = "both commit slots are empty"
    for slot in (0, 1):
        raw = data[slot * SLOT_BYTES : (slot + 1) * SLOT_BYTES].rstrip(b"\0")
        if not raw:
            continue
        try:
            state = decode_commit(raw, path)
        except StoreCorrupted as error:  # a torn slot: the writer was writing it
            problem = error.reason
            continue
        if newest is None or state.sequence > newest.sequence:
            newest = state
    if newest is None:
        raise StoreCorrupted(path, 0, problem)
    return newest


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

    def write(self, state: CommitState) -> None:
        """Overwrite the slot of `state.sequence`'s parity (the one not holding the last
        commit): from here on readers may see it. Raises OSError, ValueError if too large."""
        with files.naming(self.path):
            files.write_at(self._fd, _slot_bytes(state), (state.sequence % 2) * SLOT_BYTES)

    def make_durable(self) -> None:
        """fdatasync the file (its size never changes, so no metadata is due). Raises OSError."""
        with files.naming(self.path):
            files.sync_data(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
