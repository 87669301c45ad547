"""Bringing a hash index back in line with its logs when the writer opens the store.

Two things can be out of line after a crash:

- entries of records past the commit: `retire_uncommitted` marks them deleted. (A writer gives
  a commit's entries their hashes only after its commit file slot is durable; before, they are
  staged as deleted slots, which a crash leaves as they are. So only a crash of a writer of the
  previous format, which entered them before writing the slot, leaves such entries);
- entries of committed records that never reached the disk (the index is fsynced only every
  `index_sync_bytes` of records, not at every commit; the commit file names where the records
  begin whose entries may not be durable): `replay_committed` enters every such record that has
  no entry. After a killed process the page cache still holds them all and it finds none
  missing; after a power cut it restores those the disk lost.
"""

from __future__ import annotations

from collections.abc import Iterable

from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.hash_index import HashIndex
from khipu.storage.kesque.segment import Segment, byte_ranges, scan_records


def retire_uncommitted(index: HashIndex, regions: Iterable[tuple[Segment, int, int]]) -> int:
    """Mark deleted the index entries of the records in `regions` (segment, start, end: bytes
    past the commit); return how many. A torn record ends the scan of its region (records are
    indexed only after their segment's fsync, so nothing after it was)."""
    retired = 0
    for segment, start, end in regions:
        try:
            for record in scan_records(segment.read, start, end, segment.path, verify=False):
                for slot, ordinal, position, _ in index.candidates(index.hash_of(record.key)):
                    if (ordinal, position) == (segment.ordinal, record.position):
                        index.mark_deleted(slot)
                        retired += 1
        except StoreCorrupted:
            pass
    return retired


def replay_committed(
    index: HashIndex, segments: list[Segment], first: tuple[int, int], last_end: int
) -> int:
    """Enter into `index` every record from byte first[1] of segment first[0] up to the
    committed end `last_end` of the last segment that has no entry there; return how many.
    Raises StoreCorrupted at a damaged committed record."""
    added = 0
    for segment, start, end in byte_ranges(segments, first, len(segments), last_end):
        for record in scan_records(segment.read, start, end, segment.path):
            hashed = index.hash_of(record.key)
            location = (segment.ordinal, record.position, record.length)
            if not any(entry[1:] == location for entry in index.candidates(hashed)):
                index.insert(hashed, *location)
                added += 1
    return added
