"""Blocks of contending transactions, planned from a list of actions, for differential tests.

An `Action` is one thing a user does (increment a hot counter, CREATE2 a child and destroy it,
send value to the coinbase...). `ContentionChain` turns a list of actions into signed
transactions, keeping every sender's nonce, and builds the block with py-evm's serial
`import_block` (so its header is serial execution's result). Every planned block is valid: the
senders are rich, gas limits generous, and a sender funded inside a block spends only after
its funding transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth.vm.forks.prague.transactions import Authorization
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from khipu.devnet import contention
from khipu.devnet.builder import (
    EXTRA_DATA,
    FEE_RECIPIENT,
    BuiltBlock,
    DevChainBuilder,
)
from khipu.devnet.genesis import DevAccount, dev_accounts, dev_chain_config, dev_genesis_json
from khipu.devnet.system_contracts import (
    CONSOLIDATION_REQUESTS_ADDRESS,
    WITHDRAWAL_REQUESTS_ADDRESS,
)
from khipu.devnet.workload import PlannedTx, PlannedWithdrawal, TxKind, created_address

FORKS = ("prague", "cancun", "shanghai")
SENDERS = 6  # few senders: nonce chains are common
FUNDED = 3  # keys with no genesis balance, funded inside blocks
FRESH = tuple(bytes(keccak(b"contention fresh " + bytes([i])))[12:] for i in range(3))
SALTS = 3
PRECOMPILES = tuple(range(1, 10))  # ecrecover .. blake2f (0x0a and later are slow in py-evm)
GWEI = 10**9
ETH = 10**18
CALL_GAS = 300_000
BURN_GAS = 60_000
FUND_AMOUNT = ETH

ACTION_KINDS = (
    "transfer",  # value to a recipient (an account, a contract, the coinbase, a precompile)
    "count",  # increment (or read) a counter slot
    "read",  # store BALANCE(COINBASE) and the balance and code hash of a recipient
    "forward",  # a contract CALLs a recipient with value it may not have
    "burn",  # out of gas after a write
    "revert",  # REVERT after a nested write
    "create2",  # the factory CREATE2s a child (a collision on a reused salt), maybe destroys it
    "destroy_child",  # call a child: SELFDESTRUCT (deletes only pre-Cancun or if just created)
    "destroy",  # call the genesis destructible contract
    "deploy",  # a creation transaction: counter, child, or init code that self-destructs
    "call_created",  # call a contract an earlier deploy created
    "precompile",  # STATICCALL a precompile with random input
    "fund_and_spend",  # fund a key with no balance; it sends a transaction later in the block
    "delegate",  # Prague: a set-code transaction delegates an account to a contract, calls it
    "request",  # a withdrawal or consolidation request to the system contracts
    "blob",  # Cancun on: a blob transaction (one or two blobs) paying value to a recipient
)
MAX_BLOBS = {"cancun": 6, "prague": 9}  # per block
DELEGATES = (contention.COUNTER, contention.FORWARDER, bytes(20))  # the zero address clears
BLOB_FEE_CAP = 10**9  # wei per blob gas, far over the blob base fee of these short chains
REQUEST_FEE = 10**6  # more than the request contracts' fee while their queues stay short
SET_CODE_MAGIC = b"\x05"


@dataclass(frozen=True)
class Action:
    """One planned user action; which fields matter depends on `kind`."""

    kind: str
    sender: int  # index into the dev accounts (0..SENDERS-1)
    target: int  # which recipient, slot, salt, precompile or created contract
    value: int  # wei sent (or forwarded)
    flag: bool  # read-only count, destroy after create2, init code variant...
    envelope: TxKind = TxKind.DYNAMIC_FEE
    tip_gwei: int = 1
    access_list: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (recipient index, slots)
    data: bytes = b""  # precompile input


@dataclass(frozen=True)
class PlannedSetCode:
    """The authorizations of a set-code transaction: (authority, delegate address, nonce)."""

    authorizations: tuple[tuple[DevAccount, bytes, int], ...]


@dataclass(frozen=True)
class Signing:
    """A planned transaction, the account that signs it, and set-code authorizations if any."""

    tx: PlannedTx
    account: DevAccount
    set_code: PlannedSetCode | None = None
    blob_hashes: tuple[bytes, ...] = ()  # versioned hashes of a blob transaction


@dataclass
class ContentionChain:
    """A dev chain of one fork, with the contention contracts at genesis."""

    fork: str = "prague"
    coinbase_is_sender: bool = False  # the fee recipient is sender 0 (its balance is read)
    builder: ForkDevChainBuilder = field(init=False)
    accounts: list[DevAccount] = field(init=False)
    funded: list[DevAccount] = field(init=False)
    nonces: dict[bytes, int] = field(default_factory=dict)
    created: list[bytes] = field(default_factory=list)  # contracts deploys created
    withdrawal_index: int = 0
    _blobs: int = 0  # blobs planned in the block being built

    def __post_init__(self) -> None:
        self.accounts = dev_accounts(SENDERS)
        self.funded = [
            DevAccount(100 + i, PrivateKey(keccak(b"contention funded " + bytes([i]))))
            for i in range(FUNDED)
        ]
        self.builder = ForkDevChainBuilder(genesis_document(self.fork), self.fork)
        if self.coinbase_is_sender:
            self.builder.coinbase = self.accounts[0].address

    @property
    def coinbase(self) -> bytes:
        return self.builder.coinbase

    def recipients(self) -> list[bytes]:
        """Addresses a value transfer, forward or read may name (by `target` modulo length)."""
        return [
            *(account.address for account in self.accounts[:3]),
            *FRESH,
            self.coinbase,
            contention.COUNTER,
            contention.DESTRUCTIBLE,
            contention.FORWARDER,
            *(contention.child_address(salt) for salt in range(SALTS)),
            *(precompile.to_bytes(20, "big") for precompile in (1, 3, 4, 9)),
            *self.created[-3:],
        ]

    def addresses(self) -> list[bytes]:
        """Every address a block may touch, for comparing post-states."""
        return sorted(
            {
                *self.recipients(),
                *(a.address for a in self.accounts),
                *(a.address for a in self.funded),
                *contention.runtime_codes(),
                *self.created,
                FEE_RECIPIENT,
                *(p.to_bytes(20, "big") for p in PRECOMPILES),
                WITHDRAWAL_REQUESTS_ADDRESS,
                CONSOLIDATION_REQUESTS_ADDRESS,
            }
        )

    def build(self, actions: list[Action]) -> BuiltBlock:
        """Plan, sign and build the next block from `actions`; it becomes the head."""
        template = self.builder.next_header()
        planned: list[Signing] = []
        deferred: list[Callable[[], Signing]] = []
        self._blobs = 0
        for action in actions:
            self._plan(action, planned, deferred)
        # Nonces of deferred transactions are taken now: authorizations may have moved them.
        planned += [plan() for plan in deferred]
        signed = [self._sign(template, signing) for signing in planned]
        withdrawal = PlannedWithdrawal(self.withdrawal_index, 7, FRESH[0], 1)
        self.withdrawal_index += 1
        return self.builder.build_block(template, signed, [withdrawal])

    def _sign(self, template: BlockHeaderAPI, signing: Signing) -> SignedTransactionAPI:
        if signing.blob_hashes:
            return self._sign_blob(template, signing)
        if signing.set_code is None:
            return self.builder.sign(template, signing.tx, signing.account)
        tx, chain_id = signing.tx, self.builder.chain_id
        authorizations = []
        for authority, delegate, nonce in signing.set_code.authorizations:
            message = SET_CODE_MAGIC + rlp.encode([chain_id, delegate, nonce])
            signature = authority.private_key.sign_msg(message)
            authorizations.append(
                Authorization(chain_id, Address(delegate), nonce, signature.v, signature.r,
                              signature.s)
            )  # fmt: skip
        builder: Any = self.builder.rules.vm_class_for_header(template).get_transaction_builder()
        base_fee = int(template.base_fee_per_gas or 0)
        access_list = [(Address(a), list(slots)) for a, slots in tx.access_list]
        unsigned = builder.new_unsigned_set_code_transaction(
            chain_id, tx.nonce, tx.tip, 2 * base_fee + tx.tip, tx.gas, Address(tx.to), tx.value,
            tx.data, access_list, authorizations,
        )  # fmt: skip
        signed: SignedTransactionAPI = builder.decode(
            unsigned.as_signed_transaction(signing.account.private_key).encode()
        )
        return signed

    def _sign_blob(self, template: BlockHeaderAPI, signing: Signing) -> SignedTransactionAPI:
        tx, chain_id = signing.tx, self.builder.chain_id
        builder: Any = self.builder.rules.vm_class_for_header(template).get_transaction_builder()
        base_fee = int(template.base_fee_per_gas or 0)
        access_list = [(Address(a), list(slots)) for a, slots in tx.access_list]
        unsigned = builder.new_unsigned_blob_transaction(
            chain_id, tx.nonce, tx.tip, 2 * base_fee + tx.tip, tx.gas, Address(tx.to), tx.value,
            tx.data, access_list, BLOB_FEE_CAP, list(signing.blob_hashes),
        )  # fmt: skip
        signed: SignedTransactionAPI = builder.decode(
            unsigned.as_signed_transaction(signing.account.private_key).encode()
        )
        return signed

    def _plan(
        self, action: Action, planned: list[Signing], deferred: list[Callable[[], Signing]]
    ) -> None:
        account = self.accounts[action.sender % SENDERS]
        recipients = self.recipients()
        recipient = recipients[action.target % len(recipients)]
        kind = action.kind
        to: bytes
        data = b""
        value = action.value
        gas = CALL_GAS
        if kind == "transfer":
            to = recipient
        elif kind == "count":
            to, data = contention.COUNTER, contention.counter_call(action.target % 4, action.flag)
        elif kind == "read":
            to, data = contention.READER, contention.address_call(recipient)
        elif kind == "forward":
            # Forwards `value` more than the transaction brings whenever `flag` is set: the
            # inner call fails unless the forwarder holds enough from earlier transactions.
            to = contention.FORWARDER
            amount = value * 2 + 1 if action.flag else value
            data = contention.forward_call(recipient, amount)
        elif kind == "burn":
            to, gas = contention.BURNER, BURN_GAS
        elif kind == "revert":
            to = contention.REVERTER
        elif kind == "create2":
            to = contention.FACTORY
            data = contention.factory_call(action.target % SALTS, action.flag, recipient)
        elif kind == "destroy_child":
            to = contention.child_address(action.target % SALTS)
            data = contention.address_call(recipients[action.value % len(recipients)])
            value = 0
        elif kind == "destroy":
            to, data = contention.DESTRUCTIBLE, contention.address_call(recipient)
        elif kind == "deploy":
            to, data = b"", deploy_code(action.target)
            self.created.append(created_address(account.address, self._nonce(account)))
        elif kind == "call_created":
            to = self.created[action.target % len(self.created)] if self.created else recipient
            data = contention.counter_call(action.target % 2)
        elif kind == "precompile":
            precompile = PRECOMPILES[action.target % len(PRECOMPILES)]
            to, data = (
                contention.PRECOMPILE_CALLER,
                contention.precompile_call(precompile, action.data),
            )
        elif kind == "fund_and_spend":
            funded = self.funded[action.target % FUNDED]
            planned.append(Signing(self._tx(action, account, funded.address, FUND_AMOUNT), account))
            amount = value % (ETH // 10)
            deferred.append(lambda: Signing(self._tx(action, funded, recipient, amount), funded))
            return
        elif kind == "delegate":
            authorities = [*self.accounts[:3], *self.funded]
            authority = authorities[action.target % len(authorities)]
            tx = self._tx(action, account, authority.address, value % ETH)
            if self.fork != "prague":
                planned.append(Signing(tx, account))
                return
            # The sender's nonce is already incremented when the authorization is checked;
            # a stale nonce (`flag`) makes the authorization invalid, so it is skipped.
            nonce = self._nonce(authority) + (1 if action.flag else 0)
            if not action.flag:
                self.nonces[authority.address] = nonce + 1
            delegate = DELEGATES[action.value % len(DELEGATES)]
            tx = replace(tx, kind=TxKind.DYNAMIC_FEE)
            set_code = PlannedSetCode(((authority, delegate, nonce),))
            planned.append(Signing(tx, account, set_code))
            return
        elif kind == "request":
            consolidation = action.flag
            pubkeys = (action.data * 96)[:96] if action.data else bytes(range(96))
            if consolidation:
                to, data = CONSOLIDATION_REQUESTS_ADDRESS, pubkeys
            else:
                to, data = WITHDRAWAL_REQUESTS_ADDRESS, pubkeys[:48] + (value % 2**64).to_bytes(8)
            value = REQUEST_FEE
        elif kind == "blob":
            count = 1 + action.target % 2
            if self._blobs + count > MAX_BLOBS.get(self.fork, 0):
                count = 0  # Shanghai, or the block is full of blobs: a plain transaction
            self._blobs += count
            tx = self._tx(action, account, recipient, value)
            hashes = tuple(
                b"\x01" + bytes(keccak(bytes([index]) + action.data))[1:] for index in range(count)
            )
            if hashes:
                tx = replace(tx, kind=TxKind.DYNAMIC_FEE)
            planned.append(Signing(tx, account, blob_hashes=hashes))
            return
        else:
            raise ValueError(f"unknown action kind {kind!r}")
        planned.append(Signing(self._tx(action, account, to, value, data, gas), account))

    def _nonce(self, account: DevAccount) -> int:
        return self.nonces.get(account.address, 0)

    def _tx(
        self, action: Action, account: DevAccount, to: bytes, value: int, data: bytes = b"",
        gas: int = CALL_GAS,
    ) -> PlannedTx:  # fmt: skip
        nonce = self._nonce(account)
        self.nonces[account.address] = nonce + 1
        envelope = action.envelope
        if envelope is TxKind.LEGACY and action.access_list:
            envelope = TxKind.ACCESS_LIST
        recipients = self.recipients()
        access_list = tuple(
            (recipients[index % len(recipients)], slots) for index, slots in action.access_list
        )
        tip = action.tip_gwei * GWEI
        return PlannedTx(
            account.index, nonce, to, value, data, gas, tip, True, envelope, access_list
        )


def deploy_code(variant: int) -> bytes:
    """Init code of a creation transaction: a counter, a self-destructing child, or init code
    that SELFDESTRUCTs to the coinbase at once (created and destroyed in one transaction)."""
    choice = variant % 3
    if choice == 0:
        runtime = contention.runtime_codes()[contention.COUNTER]
        return _deployer(runtime)
    if choice == 1:
        return contention.child_init_code()
    return bytes.fromhex("6001600055") + bytes.fromhex(
        "41ff"
    )  # SSTORE(0, 1); SELFDESTRUCT(COINBASE)


def _deployer(runtime: bytes) -> bytes:
    # PUSH1 size DUP1 PUSH1 offset PUSH0 CODECOPY PUSH0 RETURN, then the runtime
    prefix = bytes.fromhex("60") + bytes([len(runtime)]) + bytes.fromhex("8060095f395ff3")
    return prefix + runtime


def genesis_document(fork: str) -> dict[str, Any]:
    """A dev genesis (`fork` rules from block 0) with the contention contracts."""
    document = dev_genesis_json(account_count=SENDERS, extra_alloc=contention.genesis_alloc())
    config = dev_chain_config()
    if fork in ("cancun", "shanghai"):
        del config["pragueTime"]
        config["blobSchedule"].pop("prague")
    if fork == "shanghai":
        del config["cancunTime"]
        del config["blobSchedule"]
    document["config"] = config
    return document


class ForkDevChainBuilder(DevChainBuilder):
    """The dev chain builder, also for Shanghai (no parent beacon root), with a settable
    fee recipient."""

    def __init__(self, genesis_json: dict[str, Any], fork: str) -> None:
        super().__init__(genesis_json)
        self.fork = fork
        self.coinbase = FEE_RECIPIENT

    def next_header(self) -> BlockHeaderAPI:
        """The header template of the next block, as DevChainBuilder's, on this chain's fork."""
        parent = self.head
        number = parent.block_number + 1
        timestamp = self.genesis.timestamp + 12 * number
        vm_class = self.rules.vm_class(number, timestamp, 0)
        seed = number.to_bytes(8, "big")
        fields: dict[str, Any] = {
            "timestamp": timestamp,
            "gas_limit": parent.gas_limit,
            "coinbase": self.coinbase,
            "extra_data": EXTRA_DATA,
            "mix_hash": keccak(b"khipu dev prevrandao " + seed),
        }
        if self.fork != "shanghai":
            fields["parent_beacon_block_root"] = keccak(b"khipu dev beacon root " + seed)
        header: BlockHeaderAPI = vm_class.create_header_from_parent(parent, **fields)
        return header
