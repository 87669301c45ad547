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

Senders ahead of execution (`SenderTask`, `recover_senders`, `worker_senders`): while block N is
persisted, the workers recover the senders of block N+1 and check their signatures, so that
grouping and py-evm find them cached. They are the workers' word as above: a serial run
(`executor.execute_block_serial`, every fallback's path) first takes them off the block
(`forget_worker_senders`) and recovers and checks everything itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth.vm.forks.berlin.transactions import TypedTransaction
from eth_keys.exceptions import BadSignature
from eth_typing import Address
from eth_utils import ValidationError

from khipu.chain.importer import decode_block
from khipu.chain.rules import ChainRules

SIGNATURE_CHECK = "check_signature_validity"
# Marks a transaction whose cached sender and skipped signature check came from a SenderTask.
FROM_WORKER = "_khipu_sender_from_worker"


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


@dataclass(frozen=True)
class SenderTask:
    """Recover the senders of the transactions of `block_rlp` (a block, or a partial block of
    executor.partial_block) and check their signatures."""

    block_rlp: bytes


def recover_senders(rules: ChainRules, task: SenderTask) -> list[bytes | None]:
    """For each transaction of the task's block, in order, its sender, else None (the
    executing process then finds the fault itself). A transaction whose validation checks its
    signature (`checks_signature`) has it checked here too, and gets None if it is not valid.
    Raises MalformedBlock if the block does not decode."""
    senders: list[bytes | None] = []
    for transaction in decode_block(task.block_rlp, rules).transactions:
        try:
            sender = bytes(transaction.sender)
            if checks_signature(transaction):
                transaction.check_signature_validity()
        except (BadSignature, ValidationError, ValueError):
            senders.append(None)
        else:
            senders.append(sender)
    return senders


def checks_signature(transaction: Any) -> bool:
    """True if py-evm's `validate()` checks the transaction's signature (recovering the key
    again): legacy transactions; a typed transaction's validation checks only its fields."""
    return not isinstance(transaction, TypedTransaction)


@contextmanager
def worker_senders(transactions: Sequence[Any], senders: Sequence[bytes | None]) -> Iterator[None]:
    """Inside, each transaction with a sender in `senders` (same order, from recover_senders)
    has it cached and, if `checks_signature`, its signature check skipped, unless py-evm had
    cached a sender already; all taken off again on leaving (forget_worker_senders)."""
    if len(senders) != len(transactions):
        raise ValueError(f"{len(senders)} senders for {len(transactions)} transactions")
    seeded = []
    for transaction, sender in zip(transactions, senders, strict=True):
        cache = transaction.__dict__
        if sender is None or "sender" in cache:
            continue
        cache["sender"] = Address(sender)
        cache[FROM_WORKER] = True
        if checks_signature(transaction) and SIGNATURE_CHECK not in cache:
            cache[SIGNATURE_CHECK] = _checked_by_the_worker
        seeded.append(transaction)
    try:
        yield
    finally:
        forget_worker_senders(seeded)


def forget_worker_senders(transactions: Sequence[Any]) -> None:
    """Take the senders and skipped signature checks `worker_senders` put on `transactions`
    off them (a no-op for the others), so that py-evm recovers and checks them itself."""
    for transaction in transactions:
        cache = transaction.__dict__
        if cache.pop(FROM_WORKER, False):
            cache.pop("sender", None)
            for holder in (transaction, cache.get("_inner")):
                if (
                    holder is not None
                    and holder.__dict__.get(SIGNATURE_CHECK) is _checked_by_the_worker
                ):
                    del holder.__dict__[SIGNATURE_CHECK]
