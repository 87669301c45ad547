"""Transaction senders recovered once, on the workers.

py-evm recovers a transaction's sender (an ECDSA public-key recovery, the costliest step of a
simple transfer) the first time `transaction.sender` is read and caches it on the object, and
for most transaction types `transaction.validate()` recovers the key once more to check the
signature. The workers do both while they speculate and return the sender in the transaction's
`TxOutcome`; a transaction the merge re-executes takes the sender from there, and when the
worker's run of it got through validation (it has a receipt) the signature check is not
repeated. A committed transaction needs neither here.

A wrong sender from a worker cannot change a result silently: the transaction would run from
another account (another nonce, balance and access list), so the merged block's state root
would differ from the header's, or the transaction would fail validation; either way the
executor re-runs the block serially (executor._merge), and what is set here has been taken off
the transaction by then, so the serial run recovers and checks everything itself. Signature
validity is a pure function of the transaction's bytes, which the worker decoded from the same
block; committed transactions already rely on the worker's validation, checked by the header.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eth_typing import Address

SIGNATURE_CHECK = "check_signature_validity"


def _checked_by_the_worker() -> None:
    """Stands in for py-evm's signature check of a transaction a worker validated."""


@contextmanager
def worker_sender(transaction: Any, outcome: Any) -> Iterator[None]:
    """Inside the block, `transaction.sender` is the sender `outcome` (a TxOutcome or None)
    carries, if it carries one and py-evm has cached none, and the signature is not checked
    again if the worker's run passed validation; both are taken off again on leaving, so
    nothing after this run (a serial re-run of the block) sees them."""
    sender = None if outcome is None else outcome.sender
    if sender is None:
        yield
        return
    cache = transaction.__dict__
    seeded = "sender" not in cache
    if seeded:
        cache["sender"] = Address(sender)
    # A typed transaction validates through its inner payload: that one's check is skipped too.
    skipped = []
    if outcome.receipt is not None:
        inner = cache.get("_inner")
        for holder in (transaction, inner):
            if holder is not None and SIGNATURE_CHECK not in holder.__dict__:
                holder.__dict__[SIGNATURE_CHECK] = _checked_by_the_worker
                skipped.append(holder.__dict__)
    try:
        yield
    finally:
        if seeded and cache.get("sender") == sender:
            del cache["sender"]
        for holder_dict in skipped:
            holder_dict.pop(SIGNATURE_CHECK, None)
