"""eth_ methods reading account state at any block: balance, nonce, code, storage, proofs."""

from __future__ import annotations

from typing import Any

import rlp
from eth.abc import StateAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.rlp.accounts import Account
from eth_hash.auto import keccak
from eth_typing import Address
from trie.hexary import HexaryTrie

from khipu.rpc.context import RpcContext
from khipu.rpc.errors import InvalidParams
from khipu.rpc.formatting import Json, data, quantity, word
from khipu.rpc.params import HexError, Params, decode_address
from khipu.rpc.registry import rpc_method


def storage_key(text: Any, what: str = "storage key") -> tuple[int, int]:
    """A storage slot as geth decodes it (0x optional, odd length padded, at most 32 bytes).

    Returns the slot and the number of bytes given. Raises InvalidParams.
    """
    if not isinstance(text, str):
        raise InvalidParams(f"invalid {what}: not a string")
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if len(digits) % 2:
        digits = "0" + digits
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise InvalidParams(f'invalid hex in {what}: "{text}"') from None
    if len(raw) > 32:
        raise InvalidParams(f"{what} too long, want at most 32 bytes: {text!r}")
    return int.from_bytes(raw, "big"), len(raw)


def _read(ctx: RpcContext, params: Params, index: int, read: Any) -> Any:
    header = ctx.view.require_header(params.block(index))
    return ctx.view.read_state(header, read)


@rpc_method("eth_accounts")
def eth_accounts(ctx: RpcContext, params: Params) -> list[str]:
    """A sync-only node holds no keys: the list is always empty (as geth without a keystore)."""
    return []


@rpc_method("eth_getBalance")
def get_balance(ctx: RpcContext, params: Params) -> str:
    address = Address(params.address(0))
    return quantity(_read(ctx, params, 1, lambda state: state.get_balance(address)))


@rpc_method("eth_getTransactionCount")
def get_transaction_count(ctx: RpcContext, params: Params) -> str:
    address = Address(params.address(0))
    return quantity(_read(ctx, params, 1, lambda state: state.get_nonce(address)))


@rpc_method("eth_getCode")
def get_code(ctx: RpcContext, params: Params) -> str:
    address = Address(params.address(0))
    return data(_read(ctx, params, 1, lambda state: state.get_code(address)))


@rpc_method("eth_getStorageAt")
def get_storage_at(ctx: RpcContext, params: Params) -> str:
    address = Address(params.address(0))
    slot, _ = storage_key(params.required(1))
    return word(_read(ctx, params, 2, lambda state: state.get_storage(address, slot)))


@rpc_method("eth_getStorageValues")
def get_storage_values(ctx: RpcContext, params: Params) -> dict[str, list[str]]:
    """Many slots of many accounts at one block: {address: [slot, ...]} -> {address: [value]}."""
    request = params.required(0)
    if not isinstance(request, dict):
        raise InvalidParams("invalid argument 0: want an object of address to slot lists")
    if not request:
        raise InvalidParams("empty request")
    wanted: list[tuple[str, Address, list[int]]] = []
    for address_text, slots in request.items():
        try:
            address = Address(decode_address(address_text))
        except HexError as exc:
            raise InvalidParams(f"invalid argument 0: {exc}") from None
        if not isinstance(slots, list):
            raise InvalidParams(f"invalid argument 0: slots of {address_text} must be a list")
        wanted.append((address_text, address, [storage_key(slot)[0] for slot in slots]))

    def read(state: StateAPI) -> dict[str, list[str]]:
        return {
            text: [word(state.get_storage(address, slot)) for slot in slots]
            for text, address, slots in wanted
        }

    return _read(ctx, params, 1, read)  # type: ignore[no-any-return]


@rpc_method("eth_getProof")
def get_proof(ctx: RpcContext, params: Params) -> Json:
    """EIP-1186: the account and storage proofs against the state root of a block."""
    address = Address(params.address(0))
    keys = params.required(1)
    if not isinstance(keys, list):
        raise InvalidParams("invalid argument 1: want an array of storage keys")
    slots = [storage_key(key) for key in keys]
    header = ctx.view.require_header(params.block(2))
    db = ctx.view.store.db
    account_trie = HexaryTrie(db, header.state_root)
    account_key = keccak(address)
    encoded_account = account_trie.get(account_key)
    account = rlp.decode(encoded_account, sedes=Account) if encoded_account else Account()
    storage_trie = HexaryTrie(db, account.storage_root)
    storage_proofs = []
    for slot, given_length in slots:
        slot_bytes = slot.to_bytes(32, "big")
        encoded_value = (
            storage_trie.get(keccak(slot_bytes)) if account.storage_root != BLANK_ROOT_HASH else b""
        )
        value = rlp.decode(encoded_value, sedes=rlp.sedes.big_endian_int) if encoded_value else 0
        proof = (
            _proof(storage_trie, keccak(slot_bytes))
            if account.storage_root != BLANK_ROOT_HASH
            else []
        )
        storage_proofs.append(
            {
                "key": data(slot_bytes) if given_length == 32 else quantity(slot),
                "value": quantity(value),
                "proof": proof,
            }
        )
    return {
        "address": data(address),
        "accountProof": _proof(account_trie, account_key),
        "balance": quantity(account.balance),
        "codeHash": data(account.code_hash or EMPTY_SHA3),
        "nonce": quantity(account.nonce),
        "storageHash": data(account.storage_root),
        "storageProof": storage_proofs,
    }


def _proof(trie: HexaryTrie, key: bytes) -> list[str]:
    """The encoded trie nodes on the path to `key`, as geth lists them (no embedded nodes)."""
    nodes = trie.get_proof(key)  # type: ignore[no-untyped-call]
    proof = []
    for position, node in enumerate(nodes):
        encoded = rlp.encode(node)
        if position == 0 or len(encoded) >= 32:
            proof.append(data(encoded))
    return proof
