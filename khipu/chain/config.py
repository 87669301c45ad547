"""Chain configuration and genesis specification, read from geth-style genesis.json files.

Field names follow geth's `params.ChainConfig` and `core.Genesis`, so a genesis.json that geth
accepts loads here unchanged. Quantities may be hex strings, decimal strings or JSON numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class GenesisError(ValueError):
    """A genesis file or chain configuration is malformed; the message names the field."""


# Block-number forks in activation order, with their geth config keys. Where two forks share a
# block (mainnet's Constantinople and Petersburg), the later one in this list is in force.
BLOCK_FORKS: tuple[tuple[str, str], ...] = (
    ("homestead", "homesteadBlock"),
    ("tangerine_whistle", "eip150Block"),
    ("spurious_dragon", "eip158Block"),
    ("byzantium", "byzantiumBlock"),
    ("constantinople", "constantinopleBlock"),
    ("petersburg", "petersburgBlock"),
    ("istanbul", "istanbulBlock"),
    ("muir_glacier", "muirGlacierBlock"),
    ("berlin", "berlinBlock"),
    ("london", "londonBlock"),
    ("arrow_glacier", "arrowGlacierBlock"),
    ("gray_glacier", "grayGlacierBlock"),
)

# Timestamp forks in activation order (all after the merge), with their geth config keys.
TIME_FORKS: tuple[tuple[str, str], ...] = (
    ("shanghai", "shanghaiTime"),
    ("cancun", "cancunTime"),
    ("prague", "pragueTime"),
    ("osaka", "osakaTime"),
    ("bpo1", "bpo1Time"),
    ("bpo2", "bpo2Time"),
    ("bpo3", "bpo3Time"),
    ("bpo4", "bpo4Time"),
    ("bpo5", "bpo5Time"),
)

# Extra block-number activations that count in fork ids but select no new rules.
FORK_ID_ONLY_BLOCKS: tuple[str, ...] = ("daoForkBlock", "eip155Block", "mergeNetsplitBlock")


def parse_quantity(value: Any, name: str) -> int:
    """An integer from a JSON number, a hex string ("0x1f") or a decimal string ("31")."""
    if isinstance(value, bool):
        raise GenesisError(f"{name}: expected a quantity, got {value!r}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
        except ValueError as exc:
            raise GenesisError(f"{name}: not a quantity: {value!r}") from exc
    else:
        raise GenesisError(f"{name}: expected a quantity, got {value!r}")
    if result < 0:
        raise GenesisError(f"{name}: negative quantity {value!r}")
    return result


def parse_bytes(value: Any, name: str, length: int | None = None) -> bytes:
    """Bytes from a hex string with or without 0x; with `length`, left-padded to it."""
    if not isinstance(value, str):
        raise GenesisError(f"{name}: expected a hex string, got {value!r}")
    text = value[2:] if value.lower().startswith("0x") else value
    if len(text) % 2:
        text = "0" + text
    try:
        data = bytes.fromhex(text)
    except ValueError as exc:
        raise GenesisError(f"{name}: not hex: {value!r}") from exc
    if length is not None:
        if len(data) > length:
            raise GenesisError(f"{name}: longer than {length} bytes: {value!r}")
        data = data.rjust(length, b"\x00")
    return data


@dataclass(frozen=True)
class BlobParams:
    """Blob gas parameters of one fork (EIP-4844, EIP-7691, EIP-7892)."""

    target: int
    max: int
    base_fee_update_fraction: int


@dataclass(frozen=True)
class ChainConfig:
    """The rules of a chain: its id and when each fork activates."""

    chain_id: int
    block_forks: Mapping[str, int] = field(default_factory=dict)
    time_forks: Mapping[str, int] = field(default_factory=dict)
    dao_fork_block: int | None = None
    dao_fork_support: bool = False
    eip155_block: int | None = None
    merge_netsplit_block: int | None = None
    terminal_total_difficulty: int | None = None
    blob_schedule: Mapping[str, BlobParams] = field(default_factory=dict)
    deposit_contract_address: bytes | None = None

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> ChainConfig:
        """Read geth's `config` object. Raises GenesisError naming a malformed field."""
        if "chainId" not in config:
            raise GenesisError("config.chainId is missing")

        def optional(key: str) -> int | None:
            value = config.get(key)
            return None if value is None else parse_quantity(value, f"config.{key}")

        block_forks = {name: b for name, key in BLOCK_FORKS if (b := optional(key)) is not None}
        time_forks = {name: t for name, key in TIME_FORKS if (t := optional(key)) is not None}
        blob_schedule = {
            name: BlobParams(
                target=parse_quantity(entry["target"], f"blobSchedule.{name}.target"),
                max=parse_quantity(entry["max"], f"blobSchedule.{name}.max"),
                base_fee_update_fraction=parse_quantity(
                    entry["baseFeeUpdateFraction"], f"blobSchedule.{name}.baseFeeUpdateFraction"
                ),
            )
            for name, entry in (config.get("blobSchedule") or {}).items()
        }
        deposit = config.get("depositContractAddress")
        return cls(
            chain_id=parse_quantity(config["chainId"], "config.chainId"),
            block_forks=block_forks,
            time_forks=time_forks,
            dao_fork_block=optional("daoForkBlock"),
            dao_fork_support=bool(config.get("daoForkSupport", False)),
            eip155_block=optional("eip155Block"),
            merge_netsplit_block=optional("mergeNetsplitBlock"),
            terminal_total_difficulty=optional("terminalTotalDifficulty"),
            blob_schedule=blob_schedule,
            deposit_contract_address=(
                None if deposit is None else parse_bytes(deposit, "depositContractAddress", 20)
            ),
        )

    def fork_id_blocks(self) -> list[int | None]:
        """Every block-number activation that fork ids count, as geth gathers them."""
        extra = [self.dao_fork_block if self.dao_fork_support else None, self.eip155_block]
        return [*self.block_forks.values(), *extra, self.merge_netsplit_block]

    def fork_id_times(self) -> list[int | None]:
        """Every timestamp activation that fork ids count."""
        return list(self.time_forks.values())


@dataclass(frozen=True)
class GenesisAccount:
    """One account of the genesis allocation."""

    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Genesis:
    """A geth-style genesis: the chain config, the genesis header fields and the allocation."""

    config: ChainConfig
    nonce: int = 0
    timestamp: int = 0
    extra_data: bytes = b""
    gas_limit: int = 0
    difficulty: int | None = None
    mix_hash: bytes = b"\x00" * 32
    coinbase: bytes = b"\x00" * 20
    number: int = 0
    gas_used: int = 0
    parent_hash: bytes = b"\x00" * 32
    base_fee: int | None = None
    excess_blob_gas: int | None = None
    blob_gas_used: int | None = None
    alloc: Mapping[bytes, GenesisAccount] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Genesis:
        """Read a parsed genesis.json. Raises GenesisError naming a malformed field."""
        if "config" not in data:
            raise GenesisError("genesis has no config object")

        def quantity(key: str, default: int | None) -> int | None:
            value = data.get(key)
            return default if value is None else parse_quantity(value, key)

        alloc = {
            parse_bytes(address, f"alloc[{address}]", 20): _account_from_json(address, entry)
            for address, entry in (data.get("alloc") or {}).items()
        }
        return cls(
            config=ChainConfig.from_json(data["config"]),
            nonce=quantity("nonce", 0) or 0,
            timestamp=quantity("timestamp", 0) or 0,
            extra_data=parse_bytes(data.get("extraData") or "0x", "extraData"),
            gas_limit=quantity("gasLimit", 0) or 0,
            difficulty=quantity("difficulty", None),
            mix_hash=parse_bytes(data.get("mixHash") or "0x", "mixHash", 32),
            coinbase=parse_bytes(data.get("coinbase") or "0x", "coinbase", 20),
            number=quantity("number", 0) or 0,
            gas_used=quantity("gasUsed", 0) or 0,
            parent_hash=parse_bytes(data.get("parentHash") or "0x", "parentHash", 32),
            base_fee=quantity("baseFeePerGas", None),
            excess_blob_gas=quantity("excessBlobGas", None),
            blob_gas_used=quantity("blobGasUsed", None),
            alloc=alloc,
        )

    @classmethod
    def load(cls, path: Path) -> Genesis:
        """Read a genesis.json file. Raises GenesisError if it is not valid JSON or malformed."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GenesisError(f"cannot read genesis file {path}: {exc}") from exc
        return cls.from_json(data)


def _account_from_json(address: str, entry: Mapping[str, Any]) -> GenesisAccount:
    where = f"alloc[{address}]"
    storage = {
        int.from_bytes(parse_bytes(k, f"{where}.storage key", 32), "big"): int.from_bytes(
            parse_bytes(v, f"{where}.storage[{k}]", 32), "big"
        )
        for k, v in (entry.get("storage") or {}).items()
    }
    return GenesisAccount(
        balance=parse_quantity(entry.get("balance", 0), f"{where}.balance"),
        nonce=parse_quantity(entry.get("nonce", 0), f"{where}.nonce"),
        code=parse_bytes(entry.get("code") or "0x", f"{where}.code"),
        storage=storage,
    )
