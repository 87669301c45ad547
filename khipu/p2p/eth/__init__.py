"""The eth wire protocol, versions 68 and 69: Status with fork ids (and, on eth/69, the served
block range), block and receipt exchange (receipts without blooms on eth/69: receipts.py)."""
