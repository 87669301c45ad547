"""Kesque: the store of topics, its single writer, its readers and its commit file.

    with Kesque.open(path) as kq:                  # the single writer (exclusive lock file)
        kq.topic("account").put(key, value)
        kq.topic("header").put_at(number, header)
        kq.commit()                                 # durable (one round of fsyncs), published
    with Kesque.open(path, readonly=True) as kq:   # any number of processes
        kq.topic("account").get(key)                # bytes or None

A commit writes out the logs and the commit file's spare slot, then waits for one round of
flushes, the segments' fsyncs and the slot's fdatasync side by side; the hash indexes take the
new records after it, and the commit counter publishes its sequence last (commit_file.py,
commit_counter.py). Readers see exactly the published commit. A writer reopening after a crash
checks only the bytes the newest commit appended, falling back to the commit before it if some
never reached the disk (commit_recovery.py), and re-reads only the records whose index entries
may not be durable yet (hash_recovery.py); it never scans the logs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Literal, NoReturn, overload

from khipu.storage.kesque.commit_counter import CommitCounter
from khipu.storage.kesque.commit_file import (
    COMMIT_FILE_NAME,
    SLOT_BYTES,
    CommitSlots,
    CommitState,
    read_published,
    write_commit,
)
from khipu.storage.kesque.commit_recovery import durable_commit
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import (
    StoreClosed,
    StoreCorrupted,
    StoreFull,
    StoreLocked,
    StoreMissing,
    StoreWriteFailed,
)
from khipu.storage.kesque.hash_topic import HashTopic
from khipu.storage.kesque.number_topic import NumberTopic
from khipu.storage.kesque.segment import list_segment_bases
from khipu.storage.kesque.topic import SyncJob

LOCK_FILE_NAME = "LOCK"
SYNC_THREADS = 8
HashTopicName = Literal["account", "storage", "evmcode"]
NumberTopicName = Literal["header", "body", "receipts", "td"]


class Kesque:
    """An open Kesque store: the writer (`readonly=False`) or a reader."""

    def __init__(self, path: Path, readonly: bool, config: KesqueConfig) -> None:
        """Use Kesque.open()."""
        self.path = path
        self.readonly = readonly
        self.config = config
        self.commit_path = path / COMMIT_FILE_NAME
        self._lock_fd = -1
        self._closed = False
        self._refresh_lock = threading.Lock()
        self._last_refresh = time.monotonic()
        self._commit_bytes = b""
        self._counter: CommitCounter | None = None
        self._sync_pool: ThreadPoolExecutor | None = None
        self._commit_slots: CommitSlots | None = None
        self.state = CommitState()
        self.hash_topics: dict[str, HashTopic] = {}
        self.number_topics: dict[str, NumberTopic] = {}

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        readonly: bool = False,
        config: KesqueConfig | None = None,
    ) -> Kesque:
        """Open the store in directory `path`.

        The writer creates the store if absent, takes the lock file and recovers from a crash
        (raises StoreLocked, StoreCorrupted). A reader raises StoreMissing if there is no store.
        """
        store = cls(Path(path), readonly, config or KesqueConfig())
        try:
            if readonly:
                store._open_reader()
            else:
                store._open_writer()
        except BaseException:
            store.close()
            raise
        return store

    def _open_reader(self) -> None:
        self._counter = CommitCounter.open_reader(self.path)
        seen = self._counter.value if self._counter else 0  # read before the commit file
        self.state, self._commit_bytes = self._read_published()
        self._make_topics(writable=False)
        self._watch_counter(seen)
        for hash_topic in self.hash_topics.values():
            hash_topic.start_reading()

    def _read_published(self) -> tuple[CommitState, bytes]:
        """Reader: the newest commit the writer published, and the commit file's bytes.

        Raises StoreMissing if there is no commit file, StoreCorrupted if it is damaged (or,
        after many tries, never holds the published commit)."""
        try:
            return read_published(self.commit_path, self._published)
        except FileNotFoundError:
            raise StoreMissing(self.path) from None

    def _published(self) -> int | None:
        return self._counter.published if self._counter is not None else None

    def _watch_counter(self, seen: int) -> None:
        """Point every topic at the commit counter (or, without one, at a counter that always
        differs, so each read asks `follow_commits` to look at the clock)."""
        counter = self._counter or CommitCounter.private(1)
        for topic in self.all_topics():
            topic.commit_counter = counter.view
            topic.seen_counter = seen
            topic.refresh_on_miss = self._counter is None

    def _open_writer(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = acquire_writer_lock(self.path)
        try:
            data = self.commit_path.read_bytes()
        except FileNotFoundError:
            self._create_empty_store()
        else:
            self.state, passed_over = durable_commit(self.path, data, self.commit_path, self.config)
            if passed_over or len(data) != 2 * SLOT_BYTES:  # or an older single-document file
                write_commit(self.commit_path, self.state, self.config.fsync)
        self._commit_slots = CommitSlots(self.commit_path)
        for name in (*self.config.hash_topics, *self.config.number_topics):
            (self.path / name).mkdir(exist_ok=True)
        self._make_topics(writable=True)
        self._recover_topics()
        self._counter = CommitCounter.open_writer(self.path)
        self._counter.publish(self.state.sequence)  # a crash may have come before publishing

    def _create_empty_store(self) -> None:
        for name in (*self.config.hash_topics, *self.config.number_topics):
            directory = self.path / name
            if directory.is_dir() and list_segment_bases(directory):
                raise StoreCorrupted(
                    self.commit_path, 0, "commit file missing but logs exist: run `khipu db repair`"
                )
        self.state = CommitState()
        write_commit(self.commit_path, self.state, self.config.fsync)

    def _make_topics(self, writable: bool) -> None:
        for name in self.config.hash_topics:
            self.hash_topics[name] = HashTopic(
                name, self.path / name, self.config, writable, self.state.topic(name), self
            )
        for name in self.config.number_topics:
            self.number_topics[name] = NumberTopic(
                name, self.path / name, self.config, writable, self.state.topic(name), self
            )

    def _recover_topics(self) -> None:
        for hash_topic in self.hash_topics.values():
            hash_topic.recover()
        for number_topic in self.number_topics.values():
            number_topic.recover()

    # -- topics ----------------------------------------------------------------------------------

    @overload
    def topic(self, name: HashTopicName) -> HashTopic: ...

    @overload
    def topic(self, name: NumberTopicName) -> NumberTopic: ...

    @overload
    def topic(self, name: str) -> HashTopic | NumberTopic: ...

    def topic(self, name: str) -> HashTopic | NumberTopic:
        """The topic called `name`; raises KeyError for a topic the config does not have."""
        if self._closed:
            raise StoreClosed(f"{self.path} is closed")
        found = self.hash_topics.get(name) or self.number_topics.get(name)
        if found is None:
            raise KeyError(f"no topic {name!r} in {self.path}")
        return found

    def hash_topic(self, name: str) -> HashTopic:
        """The hash topic called `name` (KeyError if there is none)."""
        return self.hash_topics[name]

    def number_topic(self, name: str) -> NumberTopic:
        """The number topic called `name` (KeyError if there is none)."""
        return self.number_topics[name]

    def all_topics(self) -> list[HashTopic | NumberTopic]:
        return [*self.hash_topics.values(), *self.number_topics.values()]

    # -- committing --------------------------------------------------------------------------------

    def commit(self) -> None:
        """Make everything put since the last commit durable, then visible to readers, at once.

        One round of flushes: the segments' fsyncs and the commit file's fdatasync run side by
        side (commit_recovery.py says why a crash meanwhile loses nothing committed), while
        this thread finds the new records' slots in the hash indexes (staged, not yet found by
        any get); the hash indexes take the new records after it, and readers are told last.
        Raises StoreFull or StoreWriteFailed if a write or fsync fails; the store is then back
        at its last commit (everything since it is dropped).
        """
        if self.readonly:
            raise PermissionError(f"{self.path} is open read-only")
        if self._closed:
            raise StoreClosed(f"{self.path} is closed")
        topics = [topic for topic in self.all_topics() if topic.has_changes()]
        if not topics:
            return
        sequence = self.state.sequence + 1
        assert self._commit_slots is not None
        try:
            state = self._write_commit(topics, sequence)
            staging = [topic.stage_index for topic in topics if isinstance(topic, HashTopic)]
            self._run_syncs(self._commit_flushes(topics), meanwhile=staging)
        except OSError as error:
            self._void_slot(sequence)
            self.fail_write(error, Path(error.filename) if error.filename else self.path)
        for topic in topics:  # the commit is durable: its records go into the indexes
            topic.enter_index()
        self._adopt(state, topics)
        self._tell_readers()

    def _write_commit(self, topics: list[HashTopic | NumberTopic], sequence: int) -> CommitState:
        """Write out the `topics`' buffered records and the commit's slot (durable only after
        `_commit_flushes`); the commit's state. Raises OSError."""
        for topic in topics:
            topic.write_out()
        new_topics = dict(self.state.topics)
        for topic in topics:
            new_topics[topic.name] = topic.proposed_state(sequence)
        state = CommitState(sequence, new_topics)
        assert self._commit_slots is not None
        self._commit_slots.write(state)
        return state

    def _commit_flushes(self, topics: list[HashTopic | NumberTopic]) -> list[SyncJob]:
        """The flushes that make a written commit durable: the `topics`' logs and the slot."""
        jobs = [job for topic in topics for job in topic.log_syncs()]
        if self.config.fsync:
            assert self._commit_slots is not None
            jobs.append(self._commit_slots.make_durable)
        return jobs

    def _void_slot(self, sequence: int) -> None:
        """A commit failed: put the last commit into the slot it was written to, so no later
        open takes it (best effort: if this fails too, the open's check of its records
        still finds what is missing)."""
        assert self._commit_slots is not None
        try:
            self._commit_slots.write(self.state, slot_of=sequence)
            if self.config.fsync:
                self._commit_slots.make_durable()
        except OSError:
            pass

    def _tell_readers(self) -> None:
        if self._counter is not None:
            self._counter.publish(self.state.sequence)

    def _run_syncs(
        self, jobs: list[SyncJob], meanwhile: list[Callable[[], None]] | None = None
    ) -> None:
        """Run the fsyncs of one commit step side by side on threads (they release the GIL, and
        the disk merges their flushes), and `meanwhile` in this thread once they are under way;
        return when all are done. Raises the first OSError (after every job ended)."""
        if not jobs:
            for work in meanwhile or ():
                work()
            return
        if self._sync_pool is None:
            self._sync_pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="kesque-sync")
        started = threading.Semaphore(0)

        def announced(job: SyncJob) -> SyncJob:
            def run() -> None:
                started.release()  # this thread keeps the GIL until its fsync lets go of it
                job()

            return run

        futures = [self._sync_pool.submit(announced(job)) for job in jobs]
        errors: list[OSError] = []
        try:
            if meanwhile:
                for _ in range(min(len(jobs), SYNC_THREADS)):
                    started.acquire()
                for work in meanwhile:
                    work()
        finally:
            for future in futures:  # every job ends before a rollback may close its file
                try:
                    future.result()
                except OSError as error:
                    errors.append(error)
        if errors:
            raise errors[0]

    def _settle_indexes(self) -> None:
        """Writer closing: make the hash indexes durable and publish the last commit again,
        saying so, so the next open re-enters nothing. A failure only leaves that to the next
        open."""
        try:
            settled = [topic.name for topic in self.hash_topics.values() if topic.settle_index()]
            if settled and self._commit_slots is not None:
                topics = dict(self.state.topics)
                for name in settled:
                    topics[name] = topics[name].with_changes(replay_segment=-1, replay_position=0)
                state = CommitState(self.state.sequence + 1, topics)
                self._commit_slots.write(state)
                self._commit_slots.make_durable()
                self.state = state
                self._tell_readers()
        except OSError:
            pass

    def _adopt(self, state: CommitState, topics: list[HashTopic | NumberTopic]) -> None:
        self.state = state
        for topic in topics:
            topic.committed(state.topic(topic.name))

    def rollback(self) -> None:
        """Writer: drop everything put since the last commit (topic objects stay usable)."""
        for topic in self.all_topics():
            topic.reset_to_commit()

    def fail_write(self, error: OSError, file: Path) -> NoReturn:
        """Roll back to the last commit, then raise StoreFull (disk full) or StoreWriteFailed."""
        try:
            self.rollback()
        except OSError as rollback_error:
            self._closed = True
            raise StoreWriteFailed(
                file, f"{error}; rolling back failed too ({rollback_error}): reopen the store"
            ) from error
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(file, f"disk full: {error}") from error
        raise StoreWriteFailed(file, str(error)) from error

    # -- readers' view -----------------------------------------------------------------------------

    def maybe_refresh(self) -> None:
        """Reader: re-read the commit file if `reader_refresh_seconds` have passed."""
        if self.readonly and time.monotonic() - self._last_refresh >= (
            self.config.reader_refresh_seconds
        ):
            self.refresh()

    def follow_commits(self) -> None:
        """Reader: adopt the newest commit; called by a topic whose commit counter moved, or on
        every read where the store has no counter (then at most every
        `reader_refresh_seconds`)."""
        if self._counter is None:
            self.maybe_refresh()
        else:
            self.refresh()

    def refresh(self) -> bool:
        """Reader: adopt the latest commit; True if there was a newer one. The writer: False.

        Raises StoreMissing if the commit file vanished, StoreCorrupted if it is damaged.
        """
        if not self.readonly or self._closed:
            return False
        with self._refresh_lock:
            if self._counter is None or not self._counter.has_published_word:
                counter = CommitCounter.open_reader(self.path)  # a writer made one since
                if counter is not None:  # (an older one is left to its last reference)
                    self._counter = counter
                    self._watch_counter(counter.value - 1)
            seen = self._counter.value if self._counter else 0  # before the commit file
            for topic in self.all_topics():
                topic.seen_counter = seen
            for _ in range(10):
                self._last_refresh = time.monotonic()
                state, data = self._read_published()
                if state.sequence <= self.state.sequence:  # (the same bytes may publish
                    return False  # a newer slot: the published sequence chooses)
                try:
                    for topic in self.all_topics():
                        topic.apply_state(state.topic(topic.name))
                except FileNotFoundError:
                    continue  # an index generation was replaced meanwhile: read the commit again
                self.state = state
                self._commit_bytes = data
                return True
            raise StoreCorrupted(self.commit_path, 0, "commit keeps naming missing index files")

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every file; the writer drops uncommitted puts and releases the lock."""
        if self._closed:
            return
        self._closed = True
        if not self.readonly and self._commit_slots is not None:
            self._settle_indexes()
        for topic in self.all_topics():
            topic.close()
        if self._commit_slots is not None:
            self._commit_slots.close()
        if self._counter is not None:
            self._counter.close()
        if self._sync_pool is not None:
            self._sync_pool.shutdown()
            self._sync_pool = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Kesque:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def acquire_writer_lock(store_path: Path) -> int:
    """Take the store's exclusive writer lock; return the lock file's descriptor (closing it
    releases the lock). Raises StoreLocked, naming the holder's pid, if another process has it."""
    lock_path = store_path / LOCK_FILE_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StoreLocked(lock_path, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
    return fd
