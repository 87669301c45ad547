"""khipu: a sync-only Ethereum archive node in Python, after Khipu."""

__version__ = "0.1.0"
CLIENT_NAME = "khipu"
