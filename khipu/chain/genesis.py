"""The genesis block, computed exactly as geth computes it from a genesis.json.

geth fills the fields of later forks when they are active at genesis: a base fee of 1 gwei from
London, an empty withdrawals root from Shanghai, zero blob gas and a zero parent beacon root from
Cancun, the empty requests hash from Prague. py-evm's `create_genesis_header` refuses some of these
combinations (a post-merge genesis with nonzero difficulty), so the header is built directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from eth.abc import AtomicDatabaseAPI, BlockHeaderAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_UNCLE_HASH
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth_typing import Address

from khipu.chain.config import Genesis
from khipu.chain.forkid import ForkPoints
from khipu.chain.rules import ChainRules

GENESIS_GAS_LIMIT = 5000  # geth's params.GenesisGasLimit, used when gasLimit is 0
GENESIS_DIFFICULTY = (
    131072  # geth's params.GenesisDifficulty, when difficulty and mixHash are unset
)
INITIAL_BASE_FEE = 1_000_000_000  # EIP-1559's initial base fee, when baseFeePerGas is unset
EMPTY_REQUESTS_HASH = hashlib.sha256(b"").digest()  # EIP-7685's hash of no requests
ZERO_HASH = b"\x00" * 32


def write_genesis_state(genesis: Genesis, db: AtomicDatabaseAPI) -> bytes:
    """Write the allocation's accounts, code and storage into `db`; return the state root."""
    accounts = AccountDB(db, BLANK_ROOT_HASH)
    for address, account in genesis.alloc.items():
        canonical = Address(address)
        accounts.set_balance(canonical, account.balance)
        accounts.set_nonce(canonical, account.nonce)
        if account.code:
            accounts.set_code(canonical, account.code)
        for slot, value in account.storage.items():
            accounts.set_storage(canonical, slot, value)
    accounts.persist()
    return bytes(accounts.state_root)


def genesis_state_root(genesis: Genesis) -> bytes:
    """The state root of the allocation, computed in memory."""
    return write_genesis_state(genesis, AtomicDB())


def build_genesis_header(genesis: Genesis, rules: ChainRules, state_root: bytes) -> BlockHeaderAPI:
    """The genesis header with `state_root`, with geth's defaults for unset fields."""
    difficulty = genesis.difficulty
    if difficulty is None:
        difficulty = GENESIS_DIFFICULTY if genesis.mix_hash == ZERO_HASH else 0
    number, timestamp = genesis.number, genesis.timestamp
    fields: dict[str, object] = {
        "parent_hash": genesis.parent_hash,
        "uncles_hash": EMPTY_UNCLE_HASH,
        "coinbase": genesis.coinbase,
        "state_root": state_root,
        "transaction_root": BLANK_ROOT_HASH,
        "receipt_root": BLANK_ROOT_HASH,
        "bloom": 0,
        "difficulty": difficulty,
        "block_number": number,
        "gas_limit": genesis.gas_limit or GENESIS_GAS_LIMIT,
        "gas_used": genesis.gas_used,
        "timestamp": timestamp,
        "extra_data": genesis.extra_data,
        "mix_hash": genesis.mix_hash,
        "nonce": genesis.nonce.to_bytes(8, "big"),
    }
    if rules.is_block_fork_active("london", number):
        fields["base_fee_per_gas"] = (
            INITIAL_BASE_FEE if genesis.base_fee is None else genesis.base_fee
        )
    if rules.is_time_fork_active("shanghai", timestamp):
        fields["withdrawals_root"] = BLANK_ROOT_HASH
    if rules.is_time_fork_active("cancun", timestamp):
        fields["blob_gas_used"] = genesis.blob_gas_used or 0
        fields["excess_blob_gas"] = genesis.excess_blob_gas or 0
        fields["parent_beacon_block_root"] = ZERO_HASH
    if rules.is_time_fork_active("prague", timestamp):
        fields["requests_hash"] = EMPTY_REQUESTS_HASH
    header_class = _header_class_with_fields(rules, genesis, difficulty, set(fields))
    return header_class(**fields)  # type: ignore[no-any-return]


def _header_class_with_fields(
    rules: ChainRules, genesis: Genesis, difficulty: int, field_names: set[str]
) -> type:
    # The genesis VM's header class; its fields must match exactly the ones geth fills.
    vm_class = rules.vm_class(genesis.number, genesis.timestamp, difficulty)
    block_class = vm_class.get_block_class()
    header_class: type = header_class_of(block_class)
    names = set(header_class._meta.field_names)  # type: ignore[attr-defined]
    if names != field_names:
        raise AssertionError(
            f"genesis header fields {sorted(field_names ^ names)} disagree with {vm_class.__name__}"
        )
    return header_class


def header_class_of(block_class: type) -> type:
    """The rlp header class of a py-evm block class."""
    meta = block_class._meta  # type: ignore[attr-defined]
    header_class: type = meta.fields[meta.field_names.index("header")][1]
    return header_class


def genesis_header(genesis: Genesis, rules: ChainRules) -> BlockHeaderAPI:
    """The genesis header of `genesis`, its state root computed in memory."""
    return build_genesis_header(genesis, rules, genesis_state_root(genesis))


@dataclass(frozen=True)
class ChainIdentity:
    """What peers compare to tell our chain: chain id, genesis header and fork points."""

    chain_id: int
    genesis: BlockHeaderAPI
    fork_points: ForkPoints


def chain_identity(genesis: Genesis) -> ChainIdentity:
    """The identity of the chain of `genesis` (computes the genesis state in memory)."""
    rules = ChainRules(genesis.config)
    header = genesis_header(genesis, rules)
    return ChainIdentity(
        genesis.config.chain_id, header, rules.fork_points(header.hash, genesis.timestamp)
    )
