"""Transaction senders recovered once, on the workers.

py-evm recovers a transaction's sender (an ECDSA public-key recovery, the costliest step of a
simple transfer) the first time `transaction.sender` is read and caches it on the object. The
workers recover every sender while they speculate and return it in the transaction's
`TxOutcome`; a transaction the merge re-executes reads it from there instead of recovering it
again (a committed transaction needs no sender here at all).

A wrong sender from a worker cannot change a result silently: the transaction would run from
another account (another nonce, balance and access list), so the merged block's state root
would differ from the header's, or the transaction would fail validation; either way the
executor re-runs the block serially (executor._merge), and the sender given here has been
taken off the transaction by then, so the serial run recovers it itself. Committed
transactions use the worker's whole outcome, and the same header check covers them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eth_typing import Address


@contextmanager
def worker_sender(transaction: Any, outcome: Any) -> Iterator[None]:
    """Inside the block, `transaction.sender` is the sender `outcome` (a TxOutcome or None)
    carries, if it carries one and py-evm has cached none; taken off again on leaving, so
    nothing after this run (a serial re-run of the block) sees it."""
    sender = None if outcome is None else outcome.sender
    cache = transaction.__dict__
    if sender is None or "sender" in cache:
        yield
        return
    cache["sender"] = Address(sender)
    try:
        yield
    finally:
        if cache.get("sender") == sender:
            del cache["sender"]
