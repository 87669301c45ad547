"""CommitCounter: the file `DATADIR/kesque/COMMIT_COUNTER` that tells readers of commits.

Two u64 words: the counter, and the sequence of the newest published commit.

The writer adds one to it after every commit file it publishes (and when it opens the store);
every reader maps it and compares it with the value it saw when it last read the commit file. A
get thus learns of a new commit from one load of shared memory, with no system call; only when
the counter moved does the reader re-read the commit file. A reader reads the counter before the
commit file and the writer bumps it after replacing the commit file, so whatever counter value a
reader has seen, the commit file it read afterwards is at least that new.

The second word publishes: the commit file's newest slot may hold a commit whose flushes have not
all ended (commit_file.py), so a reader takes the newest slot at or before the published sequence.
The writer stores it before bumping the counter, and a reader loads the counter before it (x86
keeps both orders), so a reader that sees the counter move sees the sequence that moved it.

The counter is a hint, never durable data: a crash between publishing a commit and bumping the
counter is repaired by the bump of the writer's next open. A store written before this file
existed has none until its writer next opens it; readers of such a store fall back to
re-reading the commit file on a timer and on a miss.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from khipu.storage.kesque import files

COUNTER_FILE_NAME = "COMMIT_COUNTER"
COUNTER_BYTES = 16
OLD_COUNTER_BYTES = 8
"""Files made before the published word hold the counter only."""


class CommitCounter:
    """The mapped counter: `view[0]` is its value (a u64 in native byte order)."""

    def __init__(self, path: Path, mapped: mmap.mmap | None) -> None:
        """Use `open_writer`, `open_reader` or `private`."""
        self.path = path
        self._map = mapped
        self.view = memoryview(mapped if mapped is not None else bytearray(COUNTER_BYTES)).cast("Q")
        """Index 0 is the counter, index 1 (when the file has it) the published sequence;
        topics hold this view to check the counter inline."""

    @classmethod
    def open_writer(cls, store_path: Path) -> CommitCounter:
        """Create or open the counter file writable, its block allocated (a mapped hole on a
        full disk would be SIGBUS). Raises OSError."""
        path = store_path / COUNTER_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with files.naming(path):
                if os.fstat(fd).st_size < COUNTER_BYTES:
                    files.allocate(fd, COUNTER_BYTES)
                mapped = mmap.mmap(fd, COUNTER_BYTES, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        return cls(path, mapped)

    @classmethod
    def open_reader(cls, store_path: Path) -> CommitCounter | None:
        """Map the counter read-only; None if the store has no counter file (yet)."""
        path = store_path / COUNTER_FILE_NAME
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size < OLD_COUNTER_BYTES:
                return None
            size = COUNTER_BYTES if size >= COUNTER_BYTES else OLD_COUNTER_BYTES
            mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return cls(path, mapped)

    @classmethod
    def private(cls, value: int = 0) -> CommitCounter:
        """A counter in this process's memory that nobody else moves (the writer's own topics
        read through this; a reader without a counter file uses one that never matches)."""
        counter = cls(Path(), None)
        counter.view[0] = value
        return counter

    @property
    def value(self) -> int:
        return int(self.view[0])

    @property
    def published(self) -> int | None:
        """The sequence of the newest published commit; None for a file of the older layout.

        0 is a real answer: the empty store a new writer creates is commit 0, and it publishes
        it at open. Reading 0 as "unknown" let a reader of a new store take the genesis commit's
        slot before its hash-index entries were in (a head whose state had no nodes yet).
        """
        if len(self.view) < 2:
            return None
        return int(self.view[1])

    @property
    def has_published_word(self) -> bool:
        return len(self.view) >= 2

    def publish(self, sequence: int) -> None:
        """Writer: readers may now take commit `sequence` (then tell them: bump)."""
        self.view[1] = sequence
        self.bump()

    def close(self) -> None:
        """Unmap the file (whoever held `view` must have let go of it: it is released)."""
        self.view.release()
        if self._map is not None:
            self._map.close()
            self._map = None

    def bump(self) -> None:
        """Writer: tell readers a new commit file is in place."""
        self.view[0] = (self.view[0] + 1) & 0xFFFFFFFFFFFFFFFF
