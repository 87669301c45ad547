"""The dev chain's contracts, in assembly: an ERC-20 token and a constant-product AMM pool.

Both are small on purpose and keep Solidity's storage layout, so tools that know ERC-20 read them:

- Token: `balances` is the mapping at slot 0 (a holder's balance at keccak(holder . 0)),
  `totalSupply` is slot 2. `transfer(to, amount)` reverts when the sender's balance is too small,
  logs `Transfer(from, to, amount)` and returns true; `balanceOf(holder)` and `totalSupply()`.
- Pool: reserve 0 at slot 0, reserve 1 at slot 1. `swap(amountIn, direction)` sells `amountIn`
  of reserve `direction` (0 or 1) for `reserveOut * amountIn / (reserveIn + amountIn)` of the
  other, reverts when that rounds to 0, logs `Swap(trader, direction; amountIn, amountOut)` and
  returns amountOut; `getReserves()` returns both. The pool holds no real tokens: it is a model of
  the hot slots every swap reads and writes.

The Python functions beside the code predict the contracts' effects, for the generator's books.
"""

from __future__ import annotations

from functools import cache

from eth_hash.auto import keccak

from khipu.devnet.assembler import assemble

BALANCES_SLOT = 0
TOTAL_SUPPLY_SLOT = 2
RESERVE_SLOTS = (0, 1)


def selector(signature: str) -> int:
    """The 4-byte function selector of a Solidity signature such as `transfer(address,uint256)`."""
    return int.from_bytes(keccak(signature.encode())[:4], "big")


def event_topic(signature: str) -> bytes:
    """The topic 0 of an event signature."""
    return bytes(keccak(signature.encode()))


TRANSFER = selector("transfer(address,uint256)")
BALANCE_OF = selector("balanceOf(address)")
TOTAL_SUPPLY = selector("totalSupply()")
SWAP = selector("swap(uint256,uint256)")
GET_RESERVES = selector("getReserves()")
TRANSFER_EVENT = event_topic("Transfer(address,address,uint256)")
SWAP_EVENT = event_topic("Swap(address,uint256,uint256,uint256)")

TOKEN_SOURCE = """
    PUSH0 CALLDATALOAD PUSH1 0xe0 SHR               ; the selector
    DUP1 PUSH4 TRANSFER EQ PUSH2 transfer JUMPI
    DUP1 PUSH4 BALANCE_OF EQ PUSH2 balance_of JUMPI
    DUP1 PUSH4 TOTAL_SUPPLY EQ PUSH2 total_supply JUMPI
fail:
    JUMPDEST PUSH0 PUSH0 REVERT

transfer:                                           ; transfer(to, amount)
    JUMPDEST
    CALLER PUSH0 MSTORE PUSH0 PUSH1 32 MSTORE
    PUSH1 64 PUSH0 KECCAK256                        ; [from_slot]
    DUP1 SLOAD                                      ; [from_slot, from_balance]
    PUSH1 36 CALLDATALOAD                           ; [from_slot, from_balance, amount]
    DUP1 DUP3 LT PUSH2 fail JUMPI                   ; from_balance < amount: revert
    DUP1 DUP3 SUB DUP4 SSTORE                       ; balances[from] -= amount
    PUSH1 4 CALLDATALOAD PUSH0 MSTORE
    PUSH1 64 PUSH0 KECCAK256                        ; [from_slot, from_balance, amount, to_slot]
    DUP1 SLOAD DUP3 ADD SWAP1 SSTORE                ; balances[to] += amount
    PUSH0 MSTORE                                    ; memory[0] = amount
    PUSH1 4 CALLDATALOAD CALLER PUSH32 TRANSFER_EVENT PUSH1 32 PUSH0 LOG3
    PUSH1 1 PUSH0 MSTORE PUSH1 32 PUSH0 RETURN      ; true

balance_of:                                         ; balanceOf(holder)
    JUMPDEST
    PUSH1 4 CALLDATALOAD PUSH0 MSTORE PUSH0 PUSH1 32 MSTORE
    PUSH1 64 PUSH0 KECCAK256 SLOAD
    PUSH0 MSTORE PUSH1 32 PUSH0 RETURN

total_supply:                                       ; totalSupply()
    JUMPDEST
    PUSH1 TOTAL_SUPPLY_SLOT SLOAD PUSH0 MSTORE PUSH1 32 PUSH0 RETURN
"""

# A constructor that credits the whole supply to the deployer, then returns the token's code.
TOKEN_CONSTRUCTOR_SOURCE = """
    CALLER PUSH0 MSTORE PUSH0 PUSH1 32 MSTORE
    PUSH32 SUPPLY PUSH1 64 PUSH0 KECCAK256 SSTORE   ; balances[deployer] = supply
    PUSH32 SUPPLY PUSH1 TOTAL_SUPPLY_SLOT SSTORE
    PUSH2 RUNTIME_SIZE DUP1 PUSH2 runtime PUSH0 CODECOPY
    PUSH0 RETURN
runtime:
"""

POOL_SOURCE = """
    PUSH0 CALLDATALOAD PUSH1 0xe0 SHR               ; the selector
    DUP1 PUSH4 SWAP EQ PUSH2 swap JUMPI
    DUP1 PUSH4 GET_RESERVES EQ PUSH2 get_reserves JUMPI
fail:
    JUMPDEST PUSH0 PUSH0 REVERT

swap:                                               ; swap(amount_in, direction)
    JUMPDEST
    PUSH1 4 CALLDATALOAD                            ; [amount_in]
    PUSH1 36 CALLDATALOAD ISZERO ISZERO             ; [amount_in, in_slot]
    DUP1 PUSH1 1 SUB                                ; [amount_in, in_slot, out_slot]
    DUP2 SLOAD DUP2 SLOAD                           ; [.., reserve_in, reserve_out]
    DUP5 DUP3 ADD DUP6 DUP3 MUL DIV                 ; [.., r_out * a_in / (r_in + a_in)]
    DUP1 ISZERO PUSH2 fail JUMPI                    ; nothing out: revert
    DUP1 DUP3 SUB DUP5 SSTORE                       ; reserve_out -= amount_out
    DUP6 DUP4 ADD DUP6 SSTORE                       ; reserve_in += amount_in
    DUP6 PUSH0 MSTORE DUP1 PUSH1 32 MSTORE          ; memory = amount_in . amount_out
    DUP5 CALLER PUSH32 SWAP_EVENT PUSH1 64 PUSH0 LOG3
    PUSH1 32 PUSH1 32 RETURN                        ; amount_out

get_reserves:                                       ; getReserves()
    JUMPDEST
    PUSH0 SLOAD PUSH0 MSTORE PUSH1 1 SLOAD PUSH1 32 MSTORE PUSH1 64 PUSH0 RETURN
"""

_CONSTANTS = {
    "TRANSFER": TRANSFER,
    "BALANCE_OF": BALANCE_OF,
    "TOTAL_SUPPLY": TOTAL_SUPPLY,
    "TOTAL_SUPPLY_SLOT": TOTAL_SUPPLY_SLOT,
    "TRANSFER_EVENT": int.from_bytes(TRANSFER_EVENT, "big"),
    "SWAP": SWAP,
    "GET_RESERVES": GET_RESERVES,
    "SWAP_EVENT": int.from_bytes(SWAP_EVENT, "big"),
}


@cache
def token_code() -> bytes:
    """The runtime code of the ERC-20 token."""
    return assemble(TOKEN_SOURCE, _CONSTANTS)


@cache
def pool_code() -> bytes:
    """The runtime code of the AMM pool."""
    return assemble(POOL_SOURCE, _CONSTANTS)


def token_deployment(supply: int) -> bytes:
    """Init code deploying a token whose whole `supply` belongs to the deployer."""
    runtime = token_code()
    constants = {**_CONSTANTS, "SUPPLY": supply, "RUNTIME_SIZE": len(runtime)}
    return assemble(TOKEN_CONSTRUCTOR_SOURCE, constants) + runtime


def balance_slot(holder: bytes) -> int:
    """The storage slot of `holder`'s token balance: keccak(holder . BALANCES_SLOT)."""
    key = holder.rjust(32, b"\x00") + BALANCES_SLOT.to_bytes(32, "big")
    return int.from_bytes(keccak(key), "big")


def token_storage(balances: dict[bytes, int]) -> dict[int, int]:
    """The storage of a token whose holders own `balances` (and nothing else exists)."""
    storage = {balance_slot(holder): amount for holder, amount in balances.items() if amount}
    storage[TOTAL_SUPPLY_SLOT] = sum(balances.values())
    return storage


def pool_storage(reserve0: int, reserve1: int) -> dict[int, int]:
    """The storage of a pool holding these reserves."""
    return {RESERVE_SLOTS[0]: reserve0, RESERVE_SLOTS[1]: reserve1}


def transfer_call(to: bytes, amount: int) -> bytes:
    """Calldata of `transfer(to, amount)`."""
    return TRANSFER.to_bytes(4, "big") + to.rjust(32, b"\x00") + amount.to_bytes(32, "big")


def balance_of_call(holder: bytes) -> bytes:
    """Calldata of `balanceOf(holder)`."""
    return BALANCE_OF.to_bytes(4, "big") + holder.rjust(32, b"\x00")


def swap_call(amount_in: int, direction: int) -> bytes:
    """Calldata of `swap(amount_in, direction)`."""
    return SWAP.to_bytes(4, "big") + amount_in.to_bytes(32, "big") + direction.to_bytes(32, "big")


def swap_output(reserve_in: int, reserve_out: int, amount_in: int) -> int:
    """What the pool pays for `amount_in`; the swap reverts when this is 0."""
    return reserve_out * amount_in // (reserve_in + amount_in)
