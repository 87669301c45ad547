"""Interfaces of the devp2p layer: the byte streams it runs on and the chain it serves from."""

from __future__ import annotations

from typing import Protocol

from khipu.chain.forkid import ForkPoints


class ByteReader(Protocol):
    """The reading half of a stream (asyncio.StreamReader satisfies it)."""

    async def readexactly(self, n: int) -> bytes:
        """Return exactly n bytes; raise asyncio.IncompleteReadError if the stream ends first."""
        ...


class ByteWriter(Protocol):
    """The writing half of a stream (asyncio.StreamWriter satisfies it)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


class ChainReader(Protocol):
    """The chain an eth peer serves from; the node implements it over its chain database.

    Headers, bodies and receipts are handed over as RLP bytes so that responses are built without
    decoding them: a header is `rlp(header)`, a body is `rlp([txs, uncles])` or
    `rlp([txs, uncles, withdrawals])` with transactions in their network form (typed ones as
    byte strings), and receipts are `rlp([receipt, ...])` as eth/68 sends them (legacy receipts as
    lists, typed ones as `type || rlp(receipt)` byte strings). Unknown blocks give None.
    """

    def network_id(self) -> int:
        """The network id announced in eth Status."""
        ...

    def genesis_hash(self) -> bytes:
        """The 32-byte hash of block 0."""
        ...

    def fork_points(self) -> ForkPoints:
        """The chain's fork activations, for fork ids."""
        ...

    def head_header(self) -> bytes:
        """The RLP of the best canonical header."""
        ...

    def head_total_difficulty(self) -> int:
        """The total difficulty at the head (frozen at the terminal difficulty after the merge)."""
        ...

    def header_by_number(self, number: int) -> bytes | None:
        """The RLP of the canonical header at `number`, or None beyond the head."""
        ...

    def header_by_hash(self, block_hash: bytes) -> bytes | None:
        """The RLP of the header with this hash, or None if unknown."""
        ...

    def body_by_hash(self, block_hash: bytes) -> bytes | None:
        """The RLP of the body of the block with this hash, or None if unknown."""
        ...

    def receipts_by_hash(self, block_hash: bytes) -> bytes | None:
        """The RLP of the receipts list of the block with this hash, or None if unknown."""
        ...
