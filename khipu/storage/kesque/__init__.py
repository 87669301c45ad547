"""Kesque: append-only topic logs with an on-disk hash index, after Khipu's Kafka-based store.

    DATADIR/kesque/
      LOCK                              the single writer's flock (holds its pid)
      COMMIT                            what readers may see, in two slots (commit_file.py)
      COMMIT_COUNTER                    the published commit and a counter; readers map it
                                        (commit_counter.py)
      account/ storage/ evmcode/        hash topics: found by key
        {first_offset:020d}.log         segments of records (segment.py)
        hash.{generation:08d}.idx       the memory-mapped hash index (hash_index.py)
        hash.{g:08d}.idx.grow-{pid}.tmp  the next generation a child builds (hash_growth.py)
      header/ body/ receipts/ td/       number topics: found by block number
        {first_offset:020d}.log
        {first_offset:020d}.index       sparse offset index per segment (offset_index.py)

A random read of a hash topic is one probe of the mapped index plus one pread of exactly the
record, with no other system call (hash_topic.py's lean get). Importing this package does not
import py-evm; the py-evm adapter is `khipu.storage.kesque.hash_store.KesqueHashStore`.
"""

from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import (
    KesqueError,
    OffsetOutOfOrder,
    StoreClosed,
    StoreCorrupted,
    StoreFull,
    StoreLocked,
    StoreMissing,
    StoreWriteFailed,
)
from khipu.storage.kesque.hash_topic import HashTopic
from khipu.storage.kesque.number_topic import NumberTopic
from khipu.storage.kesque.store import Kesque

__all__ = [
    "HashTopic",
    "Kesque",
    "KesqueConfig",
    "KesqueError",
    "NumberTopic",
    "OffsetOutOfOrder",
    "StoreClosed",
    "StoreCorrupted",
    "StoreFull",
    "StoreLocked",
    "StoreMissing",
    "StoreWriteFailed",
]
