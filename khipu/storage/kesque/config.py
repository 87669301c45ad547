"""KesqueConfig: segment size, index tuning and cache sizes per topic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HASH_TOPICS: tuple[str, ...] = ("account", "storage", "evmcode")
NUMBER_TOPICS: tuple[str, ...] = ("header", "body", "receipts", "td")

MiB = 1 << 20

_DEFAULT_CACHE_BYTES: dict[str, int] = {
    "account": 64 * MiB,
    "storage": 64 * MiB,
    "evmcode": 16 * MiB,
    "header": 8 * MiB,
    "body": 8 * MiB,
    "receipts": 8 * MiB,
    "td": 1 * MiB,
}


@dataclass(frozen=True)
class KesqueConfig:
    """How a Kesque store lays out its files and how much it caches.

    Hash topics are found by key through an on-disk hash index; number topics are addressed by
    block number as the record offset through a sparse offset index per segment.
    """

    segment_bytes: int = 1 << 30
    """A segment file is rolled when the next record would take it past this size."""
    offset_index_interval: int = 4096
    """Number topics: one offset index entry per this many log bytes (Kafka's index.interval)."""
    hash_index_initial_slots: int = 1 << 16
    """Slots of a new hash index file (a power of two)."""
    hash_index_max_load: float = 0.6
    """A hash index is rebuilt at twice the size when its used slots pass this fraction."""
    hash_index_background_entries: int = 200_000
    """An index holding at least this many entries when it passes `hash_index_max_load` is
    grown by a child process on another core while commits go on into the old generation
    (hash_growth.py); a smaller one is rebuilt in the writer at that commit, which is quicker
    than starting a process (about 3 us per entry). 0: always in the background."""
    cache_bytes: Mapping[str, int] = field(default_factory=lambda: dict(_DEFAULT_CACHE_BYTES))
    """LRU value cache per topic, in bytes of values; a topic not named gets none."""
    hash_topics: tuple[str, ...] = HASH_TOPICS
    number_topics: tuple[str, ...] = NUMBER_TOPICS
    fsync: bool = True
    """False skips fsync (tests and benchmarks only): commits survive a killed process, not a
    power cut."""
    reader_refresh_seconds: float = 0.05
    """A read-only store re-reads the commit file at most this often (and on every miss)."""
    verify_reads: bool = True
    """Check each record's CRC32C when it is read (about a tenth of a microsecond per record)."""
    index_sync_bytes: int = 256 * MiB
    """Hash topics: fsync the hash index (in the background) once this many bytes of records
    were committed since it was last made durable, not at every commit. The commit file names
    where those records begin; a writer re-enters them at open, so this bounds what it re-reads
    after a crash (~1 s for 256 MiB). Each fsync leaves the index's pages clean, and the next
    write to a clean page of the map costs a page fault (~4 us): syncing every 64 MiB made
    appends into a 335 MB index 30% slower than every 256 MiB."""
    lean_reads: bool = True
    """Hash topics: use the lean get where it applies (False: always the general path; for
    tests and benchmarks that compare the two)."""

    def __post_init__(self) -> None:
        if not 4096 <= self.segment_bytes <= (1 << 31):
            raise ValueError(f"segment_bytes must be in [4 KiB, 2 GiB], not {self.segment_bytes}")
        slots = self.hash_index_initial_slots
        if slots < 16 or slots & (slots - 1):
            raise ValueError(f"hash_index_initial_slots must be a power of two >= 16: {slots}")
        if not 0.1 <= self.hash_index_max_load <= 0.9:
            raise ValueError(
                f"hash_index_max_load must be in [0.1, 0.9]: {self.hash_index_max_load}"
            )
        if self.hash_index_background_entries < 0:
            raise ValueError(
                f"hash_index_background_entries must be >= 0: {self.hash_index_background_entries}"
            )
        if self.offset_index_interval < 64:
            raise ValueError("offset_index_interval must be at least 64 bytes")
        overlap = set(self.hash_topics) & set(self.number_topics)
        if overlap:
            raise ValueError(f"topics both hashed and numbered: {sorted(overlap)}")

    def cache_bytes_of(self, topic: str) -> int:
        """The LRU budget of `topic` in bytes (0: no cache)."""
        return int(self.cache_bytes.get(topic, 0))
