"""Parameter decoding for JSON-RPC methods, with geth's rules and error messages.

Every decoder raises InvalidParams naming the argument position ("invalid argument 1: ...")
the way geth does, so that clients written against geth see the same errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from khipu.rpc.errors import InvalidParams

MAX_BLOCK_NUMBER = 2**63 - 1
BLOCK_TAGS = ("latest", "earliest", "pending", "safe", "finalized")


class HexError(ValueError):
    """A malformed hex value; the message is geth's hexutil message."""


def decode_quantity(value: Any, bits: int = 256) -> int:
    """A hex quantity ("0x1a", no leading zeros) as an int. Raises HexError."""
    if not isinstance(value, str):
        raise HexError("json: cannot unmarshal non-string into Go value of type hexutil.Big")
    if value == "":
        raise HexError("empty hex string")
    if not value.startswith(("0x", "0X")):
        raise HexError("hex string without 0x prefix")
    digits = value[2:]
    if digits == "":
        raise HexError('hex string "0x"')
    if len(digits) > 1 and digits[0] == "0":
        raise HexError("hex number with leading zero digits")
    if not re.fullmatch(r"[0-9a-fA-F]+", digits):
        raise HexError("invalid hex string")
    number = int(digits, 16)
    if number.bit_length() > bits:
        raise HexError(f"hex number > {bits} bits")
    return number


def decode_data(value: Any, length: int | None = None, type_name: str = "hexutil.Bytes") -> bytes:
    """Hex data ("0x..", even length) as bytes, of exactly `length` bytes if given."""
    if not isinstance(value, str):
        raise HexError(f"json: cannot unmarshal non-string into Go value of type {type_name}")
    if not value.startswith(("0x", "0X")):
        raise HexError(
            f"json: cannot unmarshal hex string without 0x prefix into Go value of type {type_name}"
        )
    digits = value[2:]
    if len(digits) % 2:
        raise HexError(
            f"json: cannot unmarshal hex string of odd length into Go value of type {type_name}"
        )
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise HexError(
            f"json: cannot unmarshal invalid hex string into Go value of type {type_name}"
        ) from None
    if length is not None and len(raw) != length:
        raise HexError(f"hex string has length {len(digits)}, want {2 * length} for {type_name}")
    return raw


def decode_address(value: Any) -> bytes:
    """A 20-byte address. Raises HexError."""
    return decode_data(value, 20, "common.Address")


def decode_hash(value: Any) -> bytes:
    """A 32-byte hash. Raises HexError."""
    return decode_data(value, 32, "common.Hash")


@dataclass(frozen=True)
class BlockSelector:
    """A block parameter: a tag, a number, or a hash (EIP-1898) with requireCanonical."""

    tag: str | None = None
    number: int | None = None
    block_hash: bytes | None = None
    require_canonical: bool = False


LATEST = BlockSelector(tag="latest")


def decode_block_number(value: Any) -> BlockSelector:
    """A block number or tag (no hash). Raises HexError."""
    if isinstance(value, str) and value in BLOCK_TAGS:
        return BlockSelector(tag=value)
    if not isinstance(value, str):
        raise HexError("json: cannot unmarshal non-string into Go value of type int64")
    number = decode_quantity(value, 64)
    if number > MAX_BLOCK_NUMBER:
        raise HexError("block number larger than int64")
    return BlockSelector(number=number)


def decode_block_selector(value: Any) -> BlockSelector:
    """A block number, tag, hash or EIP-1898 object. Raises HexError."""
    if isinstance(value, dict):
        has_hash = value.get("blockHash") is not None
        has_number = value.get("blockNumber") is not None
        if has_hash and has_number:
            raise HexError("cannot specify both BlockHash and BlockNumber, choose one or the other")
        if has_hash:
            require = value.get("requireCanonical", False)
            if not isinstance(require, bool):
                raise HexError("requireCanonical must be a boolean")
            return BlockSelector(
                block_hash=decode_hash(value["blockHash"]), require_canonical=require
            )
        if has_number:
            return decode_block_number(value["blockNumber"])
        raise HexError("block number or hash must be given")
    if isinstance(value, str) and len(value) == 66:
        return BlockSelector(block_hash=decode_hash(value))
    return decode_block_number(value)


class Params:
    """The positional parameters of one call, decoded one at a time with geth's messages."""

    def __init__(self, params: list[Any], method: str) -> None:
        self.values = params
        self.method = method

    def __len__(self) -> int:
        return len(self.values)

    def raw(self, index: int, default: Any = None) -> Any:
        """The undecoded value at `index`, or `default` when absent or null."""
        if index < len(self.values) and self.values[index] is not None:
            return self.values[index]
        return default

    def required(self, index: int) -> Any:
        """The undecoded value at `index`; InvalidParams if it is missing."""
        if index >= len(self.values) or self.values[index] is None:
            raise InvalidParams(f"missing value for required argument {index}")
        return self.values[index]

    def at_most(self, count: int) -> None:
        """InvalidParams when more than `count` parameters were given."""
        if len(self.values) > count:
            raise InvalidParams(f"too many arguments, want at most {count}")

    def decode(self, index: int, decoder: Any, *, default: Any = ...) -> Any:
        """`decoder(value)` of the parameter at `index`, mapping HexError to InvalidParams.

        With no default the parameter is required.
        """
        if default is not ... and (index >= len(self.values) or self.values[index] is None):
            return default
        value = self.required(index)
        try:
            return decoder(value)
        except HexError as exc:
            raise InvalidParams(f"invalid argument {index}: {exc}") from None
        except InvalidParams as exc:
            raise InvalidParams(f"invalid argument {index}: {exc.message}") from None

    def address(self, index: int) -> bytes:
        return bytes(self.decode(index, decode_address))

    def hash(self, index: int) -> bytes:
        return bytes(self.decode(index, decode_hash))

    def block(self, index: int, default: BlockSelector | None = LATEST) -> BlockSelector:
        """A block number, tag, hash or EIP-1898 object; `latest` when omitted."""
        if default is None:
            return self.decode(index, decode_block_selector)  # type: ignore[no-any-return]
        return self.decode(index, decode_block_selector, default=default)  # type: ignore[no-any-return]

    def block_number(self, index: int) -> BlockSelector:
        """A block number or tag, required."""
        return self.decode(index, decode_block_number)  # type: ignore[no-any-return]

    def boolean(self, index: int, default: bool | None = None) -> bool:
        value = self.raw(index)
        if value is None:
            if default is None:
                raise InvalidParams(f"missing value for required argument {index}")
            return default
        if not isinstance(value, bool):
            raise InvalidParams(
                f"invalid argument {index}: json: cannot unmarshal {_json_kind(value)} "
                "into Go value of type bool"
            )
        return value

    def quantity(self, index: int, bits: int = 64) -> int:
        return int(self.decode(index, lambda v: decode_quantity(v, bits)))


def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "value"
