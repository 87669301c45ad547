"""Read and write sets of one transaction, recorded at py-evm's State level.

`recording_state_class(state_class)` subclasses a fork's State so that, while recording, every
read of an account field or storage slot is noted and every account written is remembered; at the
end `finish_recording` diffs the written accounts against their values before the transaction and
returns a `ReadWriteSet`.

Keys name one field: ("balance", a), ("nonce", a), ("code", a), ("exists", a), ("storage", a, slot).
Every key read is recorded with the value it had when the transaction started (its pre-value: a
balance, nonce or slot as an int, existence as a bool, code as its hash), even where the
transaction wrote the field before reading it; so are the keys it wrote absolutely. A transaction
whose every such key still holds its pre-value runs exactly as it ran (validation.py).
Balance changes that the transaction never read as an absolute value (value credits, the coinbase
fee, refunds to an account it did not read) are kept as commutative deltas, so two transactions
paying the same recipient or the same coinbase do not conflict. Deleting an account or wiping its
storage (SELFDESTRUCT, a CREATE over an address with storage) is noted as a wipe; a transaction
with a wipe is always re-executed in the merge (rare, and conservative), and a later one reading
any field of a wiped account too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth.abc import StateAPI
from eth_typing import Address, Hash32

FieldKey = tuple[str, bytes] | tuple[str, bytes, int]


class UnknownValue:
    """A pre-value the recording cannot know (a slot read after its account's storage was
    wiped): equal to nothing, so a transaction that read one is always re-executed."""

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = UnknownValue()
ReadValue = int | bool | bytes | UnknownValue
# the position of each account field in _Recorder.before
_FIELD_POSITION = {"exists": 0, "balance": 1, "nonce": 2, "code": 3}


@dataclass(frozen=True)
class AccountWrite:
    """The final values a transaction left in one account (None: that field unchanged)."""

    exists: bool | None = None
    balance: int | None = None  # an absolute final balance
    balance_delta: int | None = None  # a commutative credit or debit instead
    nonce: int | None = None
    code: bytes | None = None
    storage: tuple[tuple[int, int], ...] = ()  # (slot, final value)
    wiped: bool = False


@dataclass(frozen=True)
class ReadWriteSet:
    """What one transaction read (field keys) and wrote (per account), and the pre-value of
    every key it read or wrote absolutely (`values`; a key read without one is unknown)."""

    reads: frozenset[FieldKey]
    writes: dict[bytes, AccountWrite]
    values: dict[FieldKey, ReadValue] = field(default_factory=dict)

    @property
    def has_wipe(self) -> bool:
        """True if the transaction deleted an account or wiped a storage (even if reverted)."""
        return any(write.wiped for write in self.writes.values())

    def written_keys(self) -> set[FieldKey]:
        """The field keys this transaction wrote; a wipe is ("wipe", address)."""
        keys: set[FieldKey] = set()
        for address, write in self.writes.items():
            if write.exists is not None:
                keys.add(("exists", address))
            if write.balance is not None or write.balance_delta is not None:
                keys.add(("balance", address))
            if write.nonce is not None:
                keys.add(("nonce", address))
            if write.code is not None:
                keys.add(("code", address))
            for slot, _value in write.storage:
                keys.add(("storage", address, slot))
            if write.wiped:
                keys.add(("wipe", address))
        return keys

    def absolute_keys(self) -> set[FieldKey]:
        """The written keys whose value is not a commutative delta."""
        keys = self.written_keys()
        for address, write in self.writes.items():
            if write.balance is None and write.balance_delta is not None:
                keys.discard(("balance", address))
                if write.exists:  # created by a credit: commutes with other credits
                    keys.discard(("exists", address))
        return keys


@dataclass
class _Recorder:
    values: dict[FieldKey, ReadValue] = field(default_factory=dict)  # key read -> pre-value
    absolute_balance: set[bytes] = field(default_factory=set)
    # address -> (exists, balance, nonce, code hash) before the first write
    before: dict[bytes, tuple[bool, int, int, Hash32]] = field(default_factory=dict)
    slots: dict[bytes, dict[int, int]] = field(default_factory=dict)  # slot -> value before
    wiped: set[bytes] = field(default_factory=set)
    in_delta: bool = False


class RecordingStateMixin:
    """Mixed in before a fork's State class: records reads and writes while recording."""

    _recorder: _Recorder | None = None

    def start_recording(self) -> None:
        """Record from now on; the state's current values are the transaction's base."""
        self._recorder = _Recorder()

    def finish_recording(self) -> ReadWriteSet:
        """Stop recording and return what was read and written since `start_recording`.

        Raises RuntimeError if recording was not started.
        """
        recorder = self._recorder
        if recorder is None:
            raise RuntimeError("finish_recording without start_recording")
        self._recorder = None
        state: Any = super()
        writes: dict[bytes, AccountWrite] = {}
        for address, (existed, balance, nonce, code_hash) in recorder.before.items():
            addr = Address(address)
            exists = state.account_exists(addr)
            new_balance = state.get_balance(addr)
            new_nonce = state.get_nonce(addr)
            new_code_hash = state.get_code_hash(addr)
            storage = tuple(
                (slot, value)
                for slot, old in sorted(recorder.slots.get(address, {}).items())
                if (value := state.get_storage(addr, slot)) != old
            )
            absolute = address in recorder.absolute_balance
            changed_balance = new_balance != balance
            write = AccountWrite(
                exists=exists if exists != existed else None,
                balance=new_balance if changed_balance and absolute else None,
                balance_delta=new_balance - balance if changed_balance and not absolute else None,
                nonce=new_nonce if new_nonce != nonce else None,
                code=state.get_code(addr) if new_code_hash != code_hash else None,
                storage=storage,
                # Wiping an account that did not exist before changes nothing of the base
                # state; its existence read catches an earlier transaction creating it.
                wiped=address in recorder.wiped and existed,
            )
            if write != AccountWrite():
                writes[address] = write
        rwset = ReadWriteSet(frozenset(recorder.values), writes, dict(recorder.values))
        for key in rwset.absolute_keys():
            if key not in rwset.values and key[0] != "wipe":  # a wipe is re-executed anyway
                rwset.values[key] = _pre_value(recorder, key, UNKNOWN)
        return rwset

    # -- recording helpers --------------------------------------------------------------

    def _read(self, key: FieldKey, current: ReadValue) -> None:
        """Note a read of `key` whose value now is `current` (the first read keeps its
        pre-value)."""
        recorder = self._recorder
        if recorder is not None and key not in recorder.values:
            recorder.values[key] = _pre_value(recorder, key, current)

    def _before_write(self, address: Address) -> None:
        recorder = self._recorder
        if recorder is None or address in recorder.before:
            return
        state: Any = super()
        recorder.before[address] = (
            state.account_exists(address),
            state.get_balance(address),
            state.get_nonce(address),
            state.get_code_hash(address),
        )

    def _credited(self, address: Address) -> bool:
        """True if a delta-only balance now holds more than before: the account is non-empty
        and exists whatever its base balance was."""
        recorder = self._recorder
        if recorder is None or address in recorder.absolute_balance:
            return False
        before = recorder.before.get(address)
        state: Any = super()
        return before is not None and state.get_balance(address) > before[1]

    # -- reads ---------------------------------------------------------------------------

    def get_balance(self, address: Address) -> int:
        state: Any = super()
        balance = int(state.get_balance(address))
        recorder = self._recorder
        if recorder is not None and not recorder.in_delta:
            self._read(("balance", address), balance)
            recorder.absolute_balance.add(address)
        return balance

    def get_nonce(self, address: Address) -> int:
        state: Any = super()
        nonce = int(state.get_nonce(address))
        self._read(("nonce", address), nonce)
        return nonce

    def get_code(self, address: Address) -> bytes:
        state: Any = super()
        if self._recorder is not None:
            self._read(("code", address), bytes(state.get_code_hash(address)))
        return bytes(state.get_code(address))

    def get_code_hash(self, address: Address) -> Hash32:
        state: Any = super()
        code_hash = Hash32(state.get_code_hash(address))
        self._read(("code", address), code_hash)
        return code_hash

    def has_code_or_nonce(self, address: Address) -> bool:
        state: Any = super()
        if self._recorder is not None:
            self._read(("code", address), bytes(state.get_code_hash(address)))
            self._read(("nonce", address), int(state.get_nonce(address)))
        return bool(state.has_code_or_nonce(address))

    def account_exists(self, address: Address) -> bool:
        state: Any = super()
        if self._credited(address):
            return True
        exists = bool(state.account_exists(address))
        self._read(("exists", address), exists)
        return exists

    def account_is_empty(self, address: Address) -> bool:
        state: Any = super()
        if self._credited(address):
            return False
        if self._recorder is not None:
            self._read(("exists", address), bool(state.account_exists(address)))
            self._read(("balance", address), int(state.get_balance(address)))
            self._read(("nonce", address), int(state.get_nonce(address)))
            self._read(("code", address), bytes(state.get_code_hash(address)))
        return bool(state.account_is_empty(address))

    def get_storage(self, address: Address, slot: int, from_journal: bool = True) -> int:
        state: Any = super()
        value = int(state.get_storage(address, slot, from_journal))
        # Without the journal py-evm answers the value at the last lock: the pre-value too.
        self._read(("storage", address, slot), value)
        return value

    # -- writes --------------------------------------------------------------------------

    def set_balance(self, address: Address, balance: int) -> None:
        self._before_write(address)
        state: Any = super()
        state.set_balance(address, balance)

    def delta_balance(self, address: Address, delta: int) -> None:
        recorder = self._recorder
        if recorder is None:
            state: Any = super()
            state.delta_balance(address, delta)
            return
        self._before_write(address)
        recorder.in_delta = True
        try:
            state = super()
            state.delta_balance(address, delta)  # calls self.get_balance, self.set_balance
        finally:
            recorder.in_delta = False

    def set_nonce(self, address: Address, nonce: int) -> None:
        self._before_write(address)
        state: Any = super()
        state.set_nonce(address, nonce)

    def increment_nonce(self, address: Address) -> None:
        state: Any = super()
        if self._recorder is not None:
            self._read(("nonce", address), int(state.get_nonce(address)))
        self._before_write(address)
        state.increment_nonce(address)

    def set_code(self, address: Address, code: bytes) -> None:
        self._before_write(address)
        state: Any = super()
        state.set_code(address, code)

    def delete_code(self, address: Address) -> None:
        self._before_write(address)
        state: Any = super()
        state.delete_code(address)

    def touch_account(self, address: Address) -> None:
        self._before_write(address)
        state: Any = super()
        state.touch_account(address)

    def set_storage(self, address: Address, slot: int, value: int) -> None:
        self._before_write(address)
        recorder = self._recorder
        state: Any = super()
        if recorder is not None:
            slots = recorder.slots.setdefault(address, {})
            if slot not in slots:
                slots[slot] = state.get_storage(address, slot)
        state.set_storage(address, slot, value)

    def delete_storage(self, address: Address) -> None:
        self._before_write(address)
        if self._recorder is not None:
            self._recorder.wiped.add(address)
        state: Any = super()
        state.delete_storage(address)

    def delete_account(self, address: Address) -> None:
        self._before_write(address)
        if self._recorder is not None:
            self._recorder.wiped.add(address)
        state: Any = super()
        state.delete_account(address)


def _pre_value(recorder: _Recorder, key: FieldKey, current: ReadValue) -> ReadValue:
    """The value `key` had when the transaction started, `current` being its value now.

    A field the transaction has not written yet still holds its pre-value. An account field
    written since has it in `before` (taken at the account's first write); a slot written
    since, in `slots`. A slot of an account whose storage the transaction wiped held 0 if the
    account did not exist (no account, no storage); otherwise it is UNKNOWN (and the wipe
    sends the transaction to re-execution anyway).
    """
    address = key[1]
    if key[0] == "storage":
        if address in recorder.wiped:
            before = recorder.before.get(address)
            return 0 if before is not None and not before[0] else UNKNOWN
        slots = recorder.slots.get(address)
        slot = key[2]  # type: ignore[misc]
        if slots is not None and slot in slots:
            return slots[slot]
        return current
    before = recorder.before.get(address)
    if before is None:
        return current
    return before[_FIELD_POSITION[key[0]]]


_CLASSES: dict[type[StateAPI], type[StateAPI]] = {}


def recording_state_class(state_class: type[StateAPI]) -> type[StateAPI]:
    """The recording subclass of a fork's State class (one per class, cached)."""
    recording = _CLASSES.get(state_class)
    if recording is None:
        name = "Recording" + state_class.__name__
        recording = type(name, (RecordingStateMixin, state_class), {})
        _CLASSES[state_class] = recording
    return recording
