"""The commit file (`DATADIR/kesque/COMMIT`): what every reader may see.

A small JSON document holding, per topic, the number of segments, the committed end of the last
one, the next offset, the record count and the hash index generation, plus a CRC32C of the rest.
The writer replaces it by write-temp + fsync + rename after the logs and indexes are durable, so
it always describes a complete commit; nothing past it exists for a reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from khipu.storage.kesque import files
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.errors import StoreCorrupted

COMMIT_FILE_NAME = "COMMIT"
FORMAT_VERSION = 1


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


def read_commit(path: Path) -> tuple[CommitState, bytes]:
    """The commit state at `path` and the raw bytes it was parsed from.

    Raises FileNotFoundError when there is none, StoreCorrupted when it is damaged.
    """
    data = path.read_bytes()
    return decode_commit(data, path), data


def write_commit(path: Path, state: CommitState, durable: bool) -> None:
    """Publish `state` atomically. Raises OSError."""
    files.write_file_atomically(path, encode_commit(state), durable)
