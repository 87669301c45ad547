"""Contracts that make the transactions of one block contend, for differential tests.

Each contract is a few lines of assembly with one job, so a generated block can combine them
freely and every kind of read-write conflict the parallel executor must see shows up:

- counter: increments the slot named by its calldata (a hot slot when many call it) and logs
  it; with a second, non-zero word it only reads and logs the slot.
- reader: stores BALANCE(COINBASE), and BALANCE and EXTCODEHASH of the address in its calldata.
- forwarder: CALLs an address with an amount it may not hold (the call then fails, the
  transaction does not), logs whether the call succeeded.
- burner: writes a slot, then loops until it runs out of gas.
- reverter: increments the counter, then REVERTs.
- factory: CREATE2s a child with the salt in its calldata (a second CREATE2 with the same salt
  collides), and on request calls the new child at once, which self-destructs in the
  transaction that created it.
- child: stores a slot when created; called, it SELFDESTRUCTs to the address in its calldata.
- precompile caller: STATICCALLs the address in its calldata with the rest as input, logs.
- destructible: a genesis contract with balance and storage that SELFDESTRUCTs on any call.

Calldata layouts are given by the `*_call` functions beside the code.
"""

from __future__ import annotations

from functools import cache

from eth_hash.auto import keccak

from khipu.devnet.assembler import assemble


def _address(label: str) -> bytes:
    return bytes(keccak(b"khipu contention " + label.encode()))[12:]


COUNTER = _address("counter")
READER = _address("reader")
FORWARDER = _address("forwarder")
BURNER = _address("burner")
REVERTER = _address("reverter")
FACTORY = _address("factory")
PRECOMPILE_CALLER = _address("precompile caller")
DESTRUCTIBLE = _address("destructible")

COUNTER_SOURCE = """
    PUSH1 32 CALLDATALOAD PUSH2 peek JUMPI
    PUSH0 CALLDATALOAD                      ; [slot]
    DUP1 SLOAD PUSH1 1 ADD                  ; [slot, value+1]
    DUP1 PUSH0 MSTORE
    SWAP1 SSTORE                            ; storage[slot] = value+1
    CALLER PUSH1 32 PUSH0 LOG1              ; log(value+1; caller)
    STOP
peek:
    JUMPDEST PUSH0 CALLDATALOAD SLOAD PUSH0 MSTORE PUSH1 32 PUSH0 LOG0
    STOP
"""

READER_SOURCE = """
    COINBASE BALANCE PUSH0 SSTORE
    PUSH0 CALLDATALOAD PUSH1 96 SHR         ; [address]
    DUP1 BALANCE PUSH1 1 SSTORE
    EXTCODEHASH PUSH1 2 SSTORE
    STOP
"""

FORWARDER_SOURCE = """
    PUSH0 PUSH0 PUSH0 PUSH0                 ; no return data, no arguments
    PUSH1 20 CALLDATALOAD                   ; value: bytes 20..52
    PUSH0 CALLDATALOAD PUSH1 96 SHR         ; to: bytes 0..20
    GAS CALL
    PUSH0 MSTORE PUSH1 32 PUSH0 LOG0        ; log(success)
    STOP
"""

BURNER_SOURCE = """
    PUSH1 1 PUSH0 SSTORE
loop:
    JUMPDEST PUSH2 loop JUMP
"""

REVERTER_SOURCE = """
    PUSH0 PUSH0 PUSH0 PUSH0 PUSH0 PUSH20 COUNTER GAS CALL POP
    PUSH1 1 PUSH1 7 SSTORE
    PUSH0 PUSH0 REVERT
"""

# Child init code: storage[0] = 1, then return the runtime that follows the init code.
CHILD_RUNTIME_SOURCE = """
    PUSH0 CALLDATALOAD PUSH1 96 SHR SELFDESTRUCT
"""

DESTRUCTIBLE_SOURCE = CHILD_RUNTIME_SOURCE


@cache
def child_runtime() -> bytes:
    """The child's runtime: SELFDESTRUCT to the address in calldata bytes 0..20."""
    return assemble(CHILD_RUNTIME_SOURCE)


@cache
def child_init_code() -> bytes:
    """The child's init code: storage[0] = 1, then deploy `child_runtime`."""
    runtime = child_runtime()
    source = """
        PUSH1 1 PUSH0 SSTORE
        PUSH1 RUNTIME_SIZE DUP1 PUSH1 PREFIX_SIZE PUSH0 CODECOPY PUSH0 RETURN
    """
    constants = {"RUNTIME_SIZE": len(runtime), "PREFIX_SIZE": 0}
    constants["PREFIX_SIZE"] = len(assemble(source, constants))
    return assemble(source, constants) + runtime


@cache
def factory_code() -> bytes:
    """The factory: calldata is salt (32 bytes), destroy flag (1 byte), beneficiary (20 bytes).

    CREATE2s the child (`child_init_code`, appended to the factory's code) with CALLVALUE; if the
    flag is non-zero calls the new child with the beneficiary, so it self-destructs in the
    transaction that created it. Logs the child's address (0 on a collision).
    """
    init = child_init_code()
    source = """
        PUSH2 INIT_SIZE PUSH2 INIT_OFFSET PUSH0 CODECOPY    ; memory[0..] = child init code
        PUSH0 CALLDATALOAD PUSH2 INIT_SIZE PUSH0 CALLVALUE CREATE2   ; [child]
        DUP1 PUSH2 0x100 MSTORE PUSH1 32 PUSH2 0x100 LOG0           ; log(child)
        PUSH1 32 CALLDATALOAD PUSH1 248 SHR ISZERO PUSH2 done JUMPI
        PUSH1 33 CALLDATALOAD PUSH2 0x200 MSTORE                    ; beneficiary, left-aligned
        PUSH0 PUSH0 PUSH1 32 PUSH2 0x200 PUSH0 DUP6 GAS CALL POP
    done:
        JUMPDEST STOP
    """
    constants = {"INIT_SIZE": len(init), "INIT_OFFSET": 0}
    body_size = len(assemble(source, constants))
    constants["INIT_OFFSET"] = body_size
    return assemble(source, constants) + init


PRECOMPILE_CALLER_SOURCE = """
    PUSH1 32 CALLDATASIZE SUB               ; [n]: the input is calldata bytes 32..
    DUP1 PUSH1 32 PUSH0 CALLDATACOPY
    PUSH1 64 PUSH2 0x200 DUP3 PUSH0
    PUSH0 CALLDATALOAD PUSH1 96 SHR GAS STATICCALL   ; [n, success]
    PUSH1 64 PUSH2 0x200 LOG1               ; log(output[0..64]; success)
    STOP
"""


@cache
def runtime_codes() -> dict[bytes, bytes]:
    """The genesis contracts by address."""
    constants = {"COUNTER": int.from_bytes(COUNTER, "big")}
    return {
        COUNTER: assemble(COUNTER_SOURCE),
        READER: assemble(READER_SOURCE),
        FORWARDER: assemble(FORWARDER_SOURCE),
        BURNER: assemble(BURNER_SOURCE),
        REVERTER: assemble(REVERTER_SOURCE, constants),
        FACTORY: factory_code(),
        PRECOMPILE_CALLER: assemble(PRECOMPILE_CALLER_SOURCE),
        DESTRUCTIBLE: assemble(DESTRUCTIBLE_SOURCE),
    }


def genesis_alloc(destructible_balance: int = 10**18) -> dict[str, dict[str, object]]:
    """Genesis accounts of the contention contracts: the counter's slots 0..3 hold 1,
    the destructible contract holds `destructible_balance` wei and a slot."""
    alloc: dict[str, dict[str, object]] = {}
    for address, code in runtime_codes().items():
        entry: dict[str, object] = {"balance": "0x0", "code": "0x" + code.hex()}
        if address == COUNTER:
            entry["storage"] = {hex(slot): "0x1" for slot in range(4)}
        if address == DESTRUCTIBLE:
            entry["balance"] = hex(destructible_balance)
            entry["storage"] = {"0x0": "0x5", "0x1": "0x6"}
        alloc["0x" + address.hex()] = entry
    return alloc


# Calldata


def word(value: int) -> bytes:
    """A 32-byte big-endian word."""
    return value.to_bytes(32, "big")


def counter_call(slot: int, read_only: bool = False) -> bytes:
    """Calldata of the counter: increment `slot`, or only read it."""
    return word(slot) + (word(1) if read_only else b"")


def address_call(address: bytes) -> bytes:
    """Calldata naming one address (reader, child, destructible)."""
    return address + bytes(12)


def forward_call(to: bytes, amount: int) -> bytes:
    """Calldata of the forwarder: CALL `to` with `amount` wei."""
    return to + word(amount)


def factory_call(salt: int, destroy: bool, beneficiary: bytes) -> bytes:
    """Calldata of the factory: CREATE2 with `salt`, then, if `destroy`, self-destruct the
    child to `beneficiary` in the same transaction."""
    return word(salt) + bytes([1 if destroy else 0]) + beneficiary


def precompile_call(precompile: int, data: bytes) -> bytes:
    """Calldata of the precompile caller: STATICCALL precompile `precompile` with `data`."""
    return precompile.to_bytes(20, "big") + bytes(12) + data


def child_address(salt: int) -> bytes:
    """The address the factory CREATE2s with `salt`."""
    preimage = b"\xff" + FACTORY + word(salt) + keccak(child_init_code())
    return bytes(keccak(preimage))[12:]
