"""Messages of the node's actors: what the Importer asks of the StorageWriter and what it hears."""

from __future__ import annotations

from dataclasses import dataclass

from eth.abc import BlockAPI


@dataclass(frozen=True)
class ImportBlock:
    """Asked of the StorageWriter: verify `block`, execute it and commit it on top of the head.

    `source` says where the block came from (a file path, later a peer) for error messages.
    """

    block: BlockAPI
    source: str


@dataclass(frozen=True)
class BlockImported:
    """The StorageWriter's answer to ImportBlock: the block is stored (now or before)."""

    number: int
    block_hash: bytes
    state_root: bytes
    transactions: int
    gas_used: int
    already_known: bool


@dataclass(frozen=True)
class GetHead:
    """Asked of the StorageWriter: the head of the store as it is committed now."""


@dataclass(frozen=True)
class StoredHead:
    """The committed head of the store."""

    number: int
    block_hash: bytes
    state_root: bytes


@dataclass(frozen=True)
class ContinueImport:
    """The Importer's own reminder: take the next step of the import (resume, send, collect)."""
