"""Typed errors of the Kesque store, each carrying what a person needs to act."""

from __future__ import annotations

from pathlib import Path


class KesqueError(Exception):
    """Base of every error raised by the Kesque store."""


class StoreCorrupted(KesqueError):
    """A file of the store does not hold what it must: bad CRC, torn record, bad index entry."""

    def __init__(self, file: Path | str, offset: int, reason: str) -> None:
        super().__init__(f"{file} at byte {offset}: {reason}")
        self.file = Path(file)
        self.offset = offset
        self.reason = reason


class StoreWriteFailed(KesqueError):
    """A write or fsync failed; the store was rolled back to its last commit."""

    def __init__(self, file: Path | str, reason: str) -> None:
        super().__init__(f"{file}: {reason}; the store is back at its last commit")
        self.file = Path(file)
        self.reason = reason


class StoreFull(StoreWriteFailed):
    """The disk is full (ENOSPC or EDQUOT); the store was rolled back to its last commit."""


class StoreLocked(KesqueError):
    """Another process holds the store's writer lock."""

    def __init__(self, lock_file: Path, holder: str) -> None:
        super().__init__(f"{lock_file} is held by another writer ({holder or 'unknown pid'})")
        self.lock_file = lock_file
        self.holder = holder


class StoreMissing(KesqueError):
    """A read-only open found no store at the path."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no Kesque store at {path} (no commit file); open it once for writing")
        self.path = path


class StoreClosed(KesqueError):
    """The store was used after close()."""


class OffsetOutOfOrder(KesqueError, ValueError):
    """put_at() was given a number not above the topic's last offset (logs are append-only)."""

    def __init__(self, topic: str, number: int, last_offset: int) -> None:
        super().__init__(
            f"topic {topic}: cannot put at {number}, the log already ends at {last_offset}"
        )
        self.topic = topic
        self.number = number
        self.last_offset = last_offset
