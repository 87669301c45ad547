"""Workload profiles: which transactions each dev block carries, and the books that predict them.

A `Workload` plans the transactions of one block at a time from one `random.Random`, keeping
nonces, token balances and pool reserves as they will be after the block, so that it knows
whether each transaction succeeds. The chain builder checks every receipt against that promise.

Profiles:
- transfers: plain ETH transfers, distinct senders and recipients within a block.
- erc20: token transfers among all dev accounts on a few tokens, one of them hot.
- amm: swaps on a few constant-product pools: two storage slots per pool, most txs conflict.
- mixed: all of the above plus contract creation, reverting calls and legacy and access-list
  transactions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import rlp
from eth_hash.auto import keccak

from khipu.devnet import contracts
from khipu.devnet.genesis import DEV_ACCOUNT_COUNT, DevAccount, dev_accounts

PROFILES = ("transfers", "erc20", "amm", "mixed")

TRANSFER_GAS = 21_000
CALL_GAS = 90_000
DEPLOY_GAS = 400_000
TOKEN_COUNT = 3
POOL_COUNT = 3
HOLDER_BALANCE = 10**24  # tokens every dev account holds of every genesis token
POOL_RESERVE = 10**24
DEPLOYED_SUPPLY = 10**24
HOT_WEIGHTS = (6, 3, 1)  # how often each token or pool is chosen: the first one is hot
WITHDRAWALS_PER_BLOCK = 2
GWEI = 10**9
UNKNOWN_SELECTOR = bytes.fromhex("deadbeef")  # no function of the token has it


class TxKind(Enum):
    """The envelope a transaction is signed in."""

    DYNAMIC_FEE = "dynamic_fee"  # EIP-1559, type 2
    ACCESS_LIST = "access_list"  # EIP-2930, type 1
    LEGACY = "legacy"  # EIP-155 signed


@dataclass(frozen=True)
class PlannedTx:
    """A transaction before signing, and whether the workload expects it to succeed."""

    sender: int  # dev account index
    nonce: int
    to: bytes  # b"" creates a contract
    value: int
    data: bytes
    gas: int
    tip: int  # priority fee per gas, in wei
    succeeds: bool
    kind: TxKind = TxKind.DYNAMIC_FEE
    access_list: tuple[tuple[bytes, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class PlannedWithdrawal:
    """A consensus-layer withdrawal credited at the end of a block (amount in gwei)."""

    index: int
    validator_index: int
    address: bytes
    amount_gwei: int


@dataclass
class Books:
    """What the chain's state will be: token balances per token and holder, pool reserves."""

    token_balances: dict[bytes, dict[bytes, int]] = field(default_factory=dict)
    pool_reserves: dict[bytes, list[int]] = field(default_factory=dict)
    deployed: list[bytes] = field(default_factory=list)


def token_address(index: int) -> bytes:
    """The address of genesis token `index`."""
    return bytes(keccak(b"khipu dev token " + index.to_bytes(2, "big")))[12:]


def pool_address(index: int) -> bytes:
    """The address of genesis pool `index`."""
    return bytes(keccak(b"khipu dev pool " + index.to_bytes(2, "big")))[12:]


def created_address(sender: bytes, nonce: int) -> bytes:
    """The address of the contract that `sender` creates with `nonce` (CREATE)."""
    return bytes(keccak(rlp.encode([sender, nonce])))[12:]


def account_count_for(txs_per_block: int) -> int:
    """How many prefunded accounts a workload of this size needs for distinct senders."""
    return max(DEV_ACCOUNT_COUNT, 2 * txs_per_block)


class Workload:
    """Plans the blocks of one profile, deterministically from `seed`."""

    def __init__(self, profile: str, txs_per_block: int, seed: int) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
        if txs_per_block < 0:
            raise ValueError(f"txs per block must be >= 0, not {txs_per_block}")
        self.profile = profile
        self.txs_per_block = txs_per_block
        self.rng = random.Random(seed)
        self.accounts: list[DevAccount] = dev_accounts(account_count_for(txs_per_block))
        self.addresses = [account.address for account in self.accounts]
        self.nonces = [0] * len(self.accounts)
        self.withdrawal_index = 0
        self.books = Books()
        for index in range(TOKEN_COUNT if profile in ("erc20", "mixed") else 0):
            holders = dict.fromkeys(self.addresses, HOLDER_BALANCE)
            self.books.token_balances[token_address(index)] = holders
        for index in range(POOL_COUNT if profile in ("amm", "mixed") else 0):
            self.books.pool_reserves[pool_address(index)] = [POOL_RESERVE, POOL_RESERVE]

    def genesis_alloc(self) -> dict[str, dict[str, Any]]:
        """The genesis accounts of the workload's contracts, with their initial storage.

        Call it before planning any block: it reads the books as they are.
        """
        alloc: dict[str, dict[str, Any]] = {}
        for address, balances in self.books.token_balances.items():
            alloc["0x" + address.hex()] = _contract_alloc(
                contracts.token_code(), contracts.token_storage(balances)
            )
        for address, (reserve0, reserve1) in self.books.pool_reserves.items():
            alloc["0x" + address.hex()] = _contract_alloc(
                contracts.pool_code(), contracts.pool_storage(reserve0, reserve1)
            )
        return alloc

    # Planning

    def plan_block(self) -> list[PlannedTx]:
        """The transactions of the next block, updating nonces and books as they will be."""
        count = self.txs_per_block
        if self.profile == "transfers":
            return self._plan_transfers(count)
        senders = self._senders(count)
        if self.profile == "erc20":
            return [self._token_transfer(sender) for sender in senders]
        if self.profile == "amm":
            return [self._swap(sender) for sender in senders]
        return [self._mixed(sender) for sender in senders]

    def plan_withdrawals(self) -> list[PlannedWithdrawal]:
        """The next block's withdrawals, to dev accounts and fresh addresses."""
        withdrawals = []
        for _ in range(WITHDRAWALS_PER_BLOCK):
            address = self.rng.choice(self.addresses) if self.rng.random() < 0.5 else self._fresh()
            withdrawals.append(
                PlannedWithdrawal(
                    self.withdrawal_index,
                    self.rng.randrange(1024),
                    address,
                    self.rng.randint(1, 32 * GWEI),
                )
            )
            self.withdrawal_index += 1
        return withdrawals

    def _plan_transfers(self, count: int) -> list[PlannedTx]:
        # Senders and recipients come from disjoint halves, so transfers of one block are
        # independent; a quarter of the recipients are new accounts.
        everyone = list(range(len(self.accounts)))
        self.rng.shuffle(everyone)
        senders, others = everyone[:count], everyone[count:]
        recipients = self.rng.sample(others, min(count, len(others)))
        txs = []
        for position, sender in enumerate(senders):
            if position < len(recipients) and self.rng.random() >= 0.25:
                to = self.addresses[recipients[position]]
            else:
                to = self._fresh()
            txs.append(self._eth_transfer(sender, to))
        return txs

    def _senders(self, count: int) -> list[int]:
        # Distinct senders as far as the accounts go.
        pool = list(range(len(self.accounts)))
        senders = self.rng.sample(pool, min(count, len(pool)))
        senders += [self.rng.choice(pool) for _ in range(count - len(senders))]
        return senders

    def _mixed(self, sender: int) -> PlannedTx:
        # 30% ETH transfers, 35% token transfers, 25% swaps, 4% deployments, 6% reverts.
        roll = self.rng.random()
        if roll < 0.30:
            tx = self._eth_transfer(sender, self._recipient())
        elif roll < 0.65:
            tx = self._token_transfer(sender)
        elif roll < 0.90:
            tx = self._swap(sender)
        elif roll < 0.94:
            tx = self._deploy_token(sender)
        else:
            tx = self._reverting_call(sender)
        if tx.to and self.rng.random() < 0.2:
            kind = self.rng.choice((TxKind.LEGACY, TxKind.ACCESS_LIST))
            access_list = _access_list_of(tx) if kind is TxKind.ACCESS_LIST else ()
            tx = _with_kind(tx, kind, access_list)
        return tx

    def _eth_transfer(self, sender: int, to: bytes) -> PlannedTx:
        value = self.rng.randint(1, 10**18)
        return self._tx(sender, to, TRANSFER_GAS, value=value)

    def _token_transfer(self, sender: int) -> PlannedTx:
        holder = self.addresses[sender]
        held = [token for token, books in self.books.token_balances.items() if books.get(holder)]
        weights = [HOT_WEIGHTS[i] if i < len(HOT_WEIGHTS) else 1 for i in range(len(held))]
        token = self.rng.choices(held, weights)[0]
        balances = self.books.token_balances[token]
        amount = self.rng.randint(1, max(1, balances[holder] // 10))
        to = self._recipient()
        balances[holder] -= amount
        balances[to] = balances.get(to, 0) + amount
        return self._tx(sender, token, CALL_GAS, data=contracts.transfer_call(to, amount))

    def _swap(self, sender: int) -> PlannedTx:
        pools = list(self.books.pool_reserves)
        pool = self.rng.choices(pools, HOT_WEIGHTS[: len(pools)])[0]
        direction = self.rng.randrange(2)
        amount_in = self.rng.randint(10**15, 10**20)
        reserves = self.books.pool_reserves[pool]
        amount_out = contracts.swap_output(reserves[direction], reserves[1 - direction], amount_in)
        succeeds = amount_out > 0
        if succeeds:
            reserves[direction] += amount_in
            reserves[1 - direction] -= amount_out
        data = contracts.swap_call(amount_in, direction)
        return self._tx(sender, pool, CALL_GAS, data=data, succeeds=succeeds)

    def _deploy_token(self, sender: int) -> PlannedTx:
        deployer = self.addresses[sender]
        address = created_address(deployer, self.nonces[sender])
        self.books.token_balances[address] = {deployer: DEPLOYED_SUPPLY}
        self.books.deployed.append(address)
        code = contracts.token_deployment(DEPLOYED_SUPPLY)
        return self._tx(sender, b"", DEPLOY_GAS, data=code)

    def _reverting_call(self, sender: int) -> PlannedTx:
        # An overdrawn token transfer, a swap of nothing, or a call of no known function.
        holder = self.addresses[sender]
        choice = self.rng.randrange(3)
        if choice == 0:
            token = self.rng.choice(list(self.books.token_balances))
            amount = self.books.token_balances[token].get(holder, 0) + 1
            data = contracts.transfer_call(self._recipient(), amount)
            return self._tx(sender, token, CALL_GAS, data=data, succeeds=False)
        if choice == 1:
            pool = self.rng.choice(list(self.books.pool_reserves))
            data = contracts.swap_call(0, self.rng.randrange(2))
            return self._tx(sender, pool, CALL_GAS, data=data, succeeds=False)
        token = self.rng.choice(list(self.books.token_balances))
        return self._tx(sender, token, CALL_GAS, data=UNKNOWN_SELECTOR, succeeds=False)

    def _tx(
        self, sender: int, to: bytes, gas: int, *, value: int = 0, data: bytes = b"",
        succeeds: bool = True,
    ) -> PlannedTx:  # fmt: skip
        nonce = self.nonces[sender]
        self.nonces[sender] += 1
        tip = self.rng.randint(1, 2 * GWEI)
        return PlannedTx(sender, nonce, to, value, data, gas, tip, succeeds)

    def _recipient(self) -> bytes:
        return self._fresh() if self.rng.random() < 0.1 else self.rng.choice(self.addresses)

    def _fresh(self) -> bytes:
        return self.rng.randbytes(20)


def _contract_alloc(code: bytes, storage: dict[int, int]) -> dict[str, Any]:
    return {
        "balance": "0x0",
        "code": "0x" + code.hex(),
        "storage": {
            "0x" + slot.to_bytes(32, "big").hex(): "0x" + value.to_bytes(32, "big").hex()
            for slot, value in sorted(storage.items())
        },
    }


def _access_list_of(tx: PlannedTx) -> tuple[tuple[bytes, tuple[int, ...]], ...]:
    # The contract called and, for a pool, both reserve slots: what a wallet would prefetch.
    if not tx.data:
        return ()  # a plain transfer has no gas to spare for a list
    slots: Sequence[int] = contracts.RESERVE_SLOTS if tx.data[:4] == _SWAP_PREFIX else ()
    return ((tx.to, tuple(slots)),)


_SWAP_PREFIX = contracts.SWAP.to_bytes(4, "big")


def _with_kind(
    tx: PlannedTx, kind: TxKind, access_list: tuple[tuple[bytes, tuple[int, ...]], ...]
) -> PlannedTx:
    return PlannedTx(
        tx.sender, tx.nonce, tx.to, tx.value, tx.data, tx.gas, tx.tip, tx.succeeds, kind,
        access_list,
    )  # fmt: skip
