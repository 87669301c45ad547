"""khipu: a sync-only Ethereum archive node in Python, after Khipu."""

import os

# eth-hash picks pycryptodome when both backends are installed; pysha3 is ~7x faster per hash
# (4.2 us vs 29.6 us for 100 bytes here). Chosen before anything imports eth_hash.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

__version__ = "0.1.0"
CLIENT_NAME = "khipu"
