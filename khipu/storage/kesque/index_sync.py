"""IndexSync: when a hash index's entries are durable, and the fsyncs that make them so.

A commit makes its records durable, not their index entries: the writer enters those into the
mapped index file afterwards, and the commit file names where the records begin whose entries
may not be on the disk yet (the replay point; a writer re-enters them at open, see
hash_recovery.py). Once `index_sync_bytes` of records were entered since the last sync, the
index file is fsynced on a thread of its own while commits go on; when that fsync is done, the
replay point moves up to the first record entered after it began.

fsync, not msync: Python's mmap.flush holds the GIL for the whole msync (hundreds of
milliseconds for a large index), while os.fsync releases it; on Linux both write back the pages
dirtied through the mapping.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from khipu.storage.kesque.hash_index import HashIndex

Location = tuple[int, int]
"""(segment ordinal, position) of a record."""

log = logging.getLogger("khipu.kesque")


class IndexSync:
    """The replay point of one hash topic's index and its background fsyncs (writer only)."""

    def __init__(self, topic: str, replay_from: Location | None, sync_bytes: int) -> None:
        self.topic = topic
        self.replay_from = replay_from
        """Where the records begin whose entries may not be durable (None: all are)."""
        self.sync_bytes = sync_bytes
        self._unsynced_bytes = 0
        self._running: Future[None] | None = None
        self._entered_since_start: Location | None = None
        self._thread: ThreadPoolExecutor | None = None

    def entered(self, first: Location, record_bytes: int) -> None:
        """The entries of a commit's records, the first at `first`, were entered."""
        self._adopt_finished()
        if self.replay_from is None:
            self.replay_from = first
        if self._running is not None and self._entered_since_start is None:
            self._entered_since_start = first
        self._unsynced_bytes += record_bytes

    def maybe_start(self, index: HashIndex, now: bool) -> None:
        """Start an fsync of `index` on the background thread if `index_sync_bytes` of records
        were entered since the last one began (or `now`), unless one is running."""
        self._adopt_finished()
        if self.replay_from is None or self._running is not None:
            return
        if not now and self._unsynced_bytes < self.sync_bytes:
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"kesque-index-{self.topic}")
        self._unsynced_bytes = 0
        self._entered_since_start = None
        self._running = self._thread.submit(index.sync)

    def not_durable(self) -> None:
        """Durability is off (config fsync=False): the page cache holds every entry."""
        self.replay_from = None

    def reset(self, replay_from: Location | None) -> None:
        """The writer synced the index itself (recovery, close): entries are durable except
        those of the records from `replay_from` on (None: all)."""
        self.wait()
        self.replay_from = replay_from
        self._unsynced_bytes = 0

    def replaced(self, replay_from: Location) -> None:
        """The writer switched to a new index generation whose entries are durable except
        those of the records from `replay_from` on (a generation grown by a child process,
        hash_growth.py). Unlike `reset` it does not wait for a running fsync of the old
        generation: that one, once done, leaves the replay point at `replay_from`."""
        self._adopt_finished()
        self.replay_from = replay_from
        self._unsynced_bytes = 0
        if self._running is not None:
            self._entered_since_start = replay_from

    def wait(self) -> None:
        """Let a running fsync finish (before its index is closed or replaced)."""
        if self._running is not None:
            self._running.exception()
            self._adopt_finished()

    def _adopt_finished(self) -> None:
        running = self._running
        if running is None or not running.done():
            return
        self._running = None
        error = running.exception()
        if error is not None:  # the replay point stays; the next sync tries again
            log.warning("kesque index fsync failed topic=%s error=%r", self.topic, error)
            return
        self.replay_from = self._entered_since_start

    def close(self) -> None:
        self.wait()
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None
