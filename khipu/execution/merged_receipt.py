"""A speculative receipt committed by the merge, kept in its RLP encoding.

A worker runs each transaction alone, so its receipt carries the transaction's own gas where the
block's receipt carries the cumulative gas of the block so far. The merge only needs to patch
that one field, and the block only needs the receipt's encoding (for the receipt root), its gas
and its bloom: `MergedReceipt` splices the new gas into the bytes without decoding the logs.

Before Byzantium a receipt's first item is the state root after its transaction, which a worker
cannot know (it ran on the parent state and left a placeholder there): the merge computes that
root on the merged state and `MergedReceipt` splices it in place of the placeholder.
"""

from __future__ import annotations

from typing import Any

from eth.abc import ReceiptBuilderAPI

from khipu.execution.rlp_items import RlpItemError, item_end, list_payload, list_prefix
from khipu.execution.trie_batch import encode_rlp


class ReceiptEncodingError(ValueError):
    """Bytes that should be an encoded receipt are not one."""


class MergedReceipt:
    """A receipt with its cumulative gas set: `encode()`, `gas_used` (cumulative), `bloom`,
    and `decoded(builder)` for code that needs py-evm's receipt object (its logs)."""

    __slots__ = ("bloom", "encoded", "gas_used", "own_gas")

    def __init__(
        self, speculative: bytes, gas_before: int, state_root: bytes | None = None
    ) -> None:
        """The receipt `speculative` (encoded, gas of its transaction alone) placed after
        `gas_before` gas of earlier transactions; with `state_root` (a receipt before
        Byzantium), that root replaces its first item. Raises ReceiptEncodingError on bad
        bytes, or if `state_root` is given for a receipt whose first item is not 32 bytes."""
        typed = bool(speculative) and speculative[0] < 0x80
        prefix = speculative[:1] if typed else b""
        try:
            start, end = list_payload(speculative, len(prefix))
            status_end = item_end(speculative, start)
            gas_end = item_end(speculative, status_end)
            bloom_end = item_end(speculative, gas_end)
        except RlpItemError as exc:
            raise ReceiptEncodingError(f"receipt 0x{speculative.hex()}: {exc}") from None
        if bloom_end > end:
            raise ReceiptEncodingError(f"receipt items overrun its list: 0x{speculative.hex()}")
        self.own_gas = int.from_bytes(_payload(speculative, status_end, gas_end), "big")
        self.gas_used = gas_before + self.own_gas
        self.bloom = int.from_bytes(_payload(speculative, gas_end, bloom_end), "big")
        gas = self.gas_used.to_bytes((self.gas_used.bit_length() + 7) // 8, "big")
        status = speculative[start:status_end]
        if state_root is not None:
            if status_end - start != 33 or len(state_root) != 32:
                raise ReceiptEncodingError(
                    f"receipt 0x{speculative.hex()} has no state root to replace"
                )
            status = encode_rlp(state_root)
        payload = status + encode_rlp(gas) + speculative[gas_end:end]
        self.encoded = prefix + list_prefix(len(payload)) + payload

    def encode(self) -> bytes:
        """The receipt's encoding as it goes into the receipt trie."""
        return self.encoded

    def decoded(self, builder: ReceiptBuilderAPI) -> Any:
        """py-evm's receipt object for these bytes."""
        return builder.decode(self.encoded)


def _payload(data: bytes, start: int, end: int) -> bytes:
    """The bytes of the RLP string item spanning start..end."""
    first = data[start]
    if first < 0x80:
        return data[start:end]
    if first < 0xB8:
        return data[start + 1 : end]
    return data[start + 1 + first - 0xB7 : end]
