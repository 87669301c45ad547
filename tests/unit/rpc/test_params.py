"""Parameter decoding with geth's rules: quantities, data, block numbers, tags, EIP-1898."""

from __future__ import annotations

import pytest

from khipu.rpc.errors import InvalidParams
from khipu.rpc.params import (
    BlockSelector,
    HexError,
    Params,
    decode_block_selector,
    decode_quantity,
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty hex string"),
        ("12", "hex string without 0x prefix"),
        ("0x", 'hex string "0x"'),
        ("0x01", "hex number with leading zero digits"),
        ("0xzz", "invalid hex string"),
        ("0x1" + "0" * 16, "hex number > 64 bits"),
    ],
)
def test_malformed_quantities_are_refused_with_geths_message(text: str, message: str) -> None:
    with pytest.raises(HexError, match=message):
        decode_quantity(text, 64)


def test_quantities_decode() -> None:
    assert decode_quantity("0x0") == 0
    assert decode_quantity("0x1b") == 27
    assert decode_quantity("0x" + "f" * 64) == 2**256 - 1


def test_block_selectors() -> None:
    assert decode_block_selector("latest") == BlockSelector(tag="latest")
    assert decode_block_selector("0x2a") == BlockSelector(number=42)
    block_hash = "0x" + "ab" * 32
    assert decode_block_selector(block_hash) == BlockSelector(block_hash=bytes.fromhex("ab" * 32))
    selector = decode_block_selector({"blockHash": block_hash, "requireCanonical": True})
    assert selector.block_hash == bytes.fromhex("ab" * 32) and selector.require_canonical
    assert decode_block_selector({"blockNumber": "0x5"}) == BlockSelector(number=5)
    with pytest.raises(HexError, match="cannot specify both"):
        decode_block_selector({"blockHash": block_hash, "blockNumber": "0x1"})


def test_params_name_the_argument_position() -> None:
    params = Params(["0x7dcd17433742f4c0ca53122ab541d0ba67fc27df", "2"], "eth_getBalance")
    assert params.address(0) == bytes.fromhex("7dcd17433742f4c0ca53122ab541d0ba67fc27df")
    with pytest.raises(InvalidParams, match="invalid argument 1: hex string without 0x prefix"):
        params.block(1)
    with pytest.raises(InvalidParams, match="missing value for required argument 2"):
        params.hash(2)
    short = Params(["0x1234"], "eth_getBalance")
    with pytest.raises(InvalidParams, match="invalid argument 0: hex string has length 4"):
        short.address(0)
