"""Kesque: append-only topic logs with an on-disk hash index, after Khipu's Kafka-based store.

Importing this package does not import py-evm; the py-evm adapter is `kesque.hash_store`.
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
