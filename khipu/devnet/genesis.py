"""The dev network's genesis: Prague rules from block 0 and deterministic prefunded accounts.

Account keys are derived from their index (keccak of a fixed label), so every machine builds the
same genesis and the same dev chain. They are public: never use them outside a dev chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey

from khipu.devnet.system_contracts import SYSTEM_CONTRACTS

DEV_CHAIN_ID = 1337
DEV_ACCOUNT_COUNT = 64
DEV_BALANCE = 10**24  # one million ether each
DEV_GAS_LIMIT = 60_000_000


@dataclass(frozen=True)
class DevAccount:
    """A prefunded dev account with its (public, deterministic) private key."""

    index: int
    private_key: PrivateKey

    @property
    def address(self) -> bytes:
        return bytes(self.private_key.public_key.to_canonical_address())


@cache
def dev_account(index: int) -> DevAccount:
    """The dev account with this index."""
    secret = keccak(b"khipu dev account " + index.to_bytes(4, "big"))
    return DevAccount(index, PrivateKey(secret))


def dev_accounts(count: int = DEV_ACCOUNT_COUNT) -> list[DevAccount]:
    """The first `count` dev accounts."""
    return [dev_account(index) for index in range(count)]


def dev_chain_config(chain_id: int = DEV_CHAIN_ID) -> dict[str, Any]:
    """A geth-style config with every fork through Prague active at genesis."""
    config: dict[str, Any] = {"chainId": chain_id}
    for key in (
        "homesteadBlock", "eip150Block", "eip155Block", "eip158Block", "byzantiumBlock",
        "constantinopleBlock", "petersburgBlock", "istanbulBlock", "muirGlacierBlock",
        "berlinBlock", "londonBlock", "arrowGlacierBlock", "grayGlacierBlock",
    ):  # fmt: skip
        config[key] = 0
    config.update(
        {
            "mergeNetsplitBlock": 0,
            "terminalTotalDifficulty": 0,
            "shanghaiTime": 0,
            "cancunTime": 0,
            "pragueTime": 0,
            "blobSchedule": {
                "cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3338477},
                "prague": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
            },
            "depositContractAddress": "0x" + "00" * 20,
        }
    )
    return config


def dev_genesis_json(
    account_count: int = DEV_ACCOUNT_COUNT,
    extra_alloc: dict[str, dict[str, Any]] | None = None,
    chain_id: int = DEV_CHAIN_ID,
) -> dict[str, Any]:
    """The genesis.json document of a dev chain with `account_count` prefunded accounts."""
    alloc: dict[str, dict[str, Any]] = {
        "0x" + address.hex(): {"balance": "0x0", "code": "0x" + code.hex()}
        for address, code in SYSTEM_CONTRACTS.items()
    }
    for account in dev_accounts(account_count):
        alloc["0x" + account.address.hex()] = {"balance": hex(DEV_BALANCE)}
    alloc.update(extra_alloc or {})
    return {
        "config": dev_chain_config(chain_id),
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": "0x" + b"khipu dev".hex(),
        "gasLimit": hex(DEV_GAS_LIMIT),
        "difficulty": "0x0",
        "mixHash": "0x" + "00" * 32,
        "coinbase": "0x" + "00" * 20,
        "baseFeePerGas": hex(1_000_000_000),
        "alloc": alloc,
    }
