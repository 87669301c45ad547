"""The state a snap/1 server answers from: trie nodes and contract code by hash.

An archive node holds every node of every state it ever had, so this is all a server needs:
account and storage tries are walked node by node from the requested root, never loaded whole.
"""

from __future__ import annotations

from typing import Protocol

from khipu.p2p.errors import P2PError


class StateUnavailable(P2PError):
    """The state cannot be read right now (the store is closed or restarting)."""


class StateReader(Protocol):
    """Trie nodes and code of the node's store, by their keccak hash.

    Both methods return None for an unknown hash and raise StateUnavailable while the store
    cannot be read at all.
    """

    def trie_node(self, node_hash: bytes) -> bytes | None:
        """The RLP of the account- or storage-trie node with this hash."""
        ...

    def code(self, code_hash: bytes) -> bytes | None:
        """The contract code with this hash."""
        ...
