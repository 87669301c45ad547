"""Value-based validation: does a speculative run still hold on the merged state?

A transaction's execution is a deterministic function of the block and of the pre-values of the
field keys it reads (rwset.py records every read, with the value it had when the transaction
started). So in the merge, a speculated transaction commits as it ran iff every key it read (or
wrote absolutely) holds, in the merged state just before it, the pre-value it saw. That holds
whatever state the speculation ran on: the parent, or the parent plus the writes of earlier
transactions of its share (speculation runs a share's transactions as a chain on one state).

Comparing is skipped, as exact without a look-up, for a key that no earlier transaction of the
block wrote in the merge and whose pre-value came from the parent (no earlier transaction of
its share wrote it: not `inherited`): both then hold the parent's value.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from khipu.execution.rwset import FieldKey, ReadValue, ReadWriteSet, UnknownValue


def current_value(state: Any, key: FieldKey) -> ReadValue:
    """The value of `key` in `state` now, in the form rwset.py records pre-values.

    `state` must not be recording (or the look-up would count as a read). Raises ValueError
    for a key of no known kind.
    """
    kind, address = key[0], key[1]
    if kind == "storage":
        return int(state.get_storage(address, key[2]))  # type: ignore[misc]
    if kind == "balance":
        return int(state.get_balance(address))
    if kind == "nonce":
        return int(state.get_nonce(address))
    if kind == "code":
        return bytes(state.get_code_hash(address))
    if kind == "exists":
        return bool(state.account_exists(address))
    raise ValueError(f"no value for the field key {key!r}")


def read_values_changed(
    rwset: ReadWriteSet,
    inherited: Set[FieldKey],
    state: Any,
    written: Set[FieldKey],
    wiped: Set[bytes],
) -> bool:
    """True if the transaction of `rwset` would not run as it ran on `state`, the merged state
    before it: a key it read or wrote absolutely now holds another value than its pre-value.

    `written` are the keys the earlier transactions of the block wrote (merged), `wiped` the
    accounts they deleted or whose storage they wiped (any key of one counts as changed: the
    per-slot values are gone), `inherited` the keys whose pre-value the speculation took from
    earlier transactions of its share rather than from the parent. A key with no recorded
    pre-value counts as changed.
    """
    values = rwset.values
    if not rwset.reads <= values.keys():
        return True
    for key, recorded in values.items():
        if isinstance(recorded, UnknownValue):
            return True
        if key not in written and key not in inherited and key[1] not in wiped:
            continue  # the parent's value on both sides
        if key[1] in wiped or recorded != current_value(state, key):
            return True
    return False
