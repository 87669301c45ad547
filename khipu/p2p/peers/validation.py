"""Checks of what a peer sends against what it must be: a body against its header's roots.

(Header sequences are checked where they are requested: khipu.p2p.eth.peer.check_header_sequence.)
A failed check raises InvalidAnswer, a PeerMisbehaved that scoring counts as lying.
"""

from __future__ import annotations

from khipu.chain.era1 import ordered_trie_root
from khipu.p2p import wire
from khipu.p2p.errors import PeerMisbehaved
from khipu.p2p.keys import keccak256

HEADER_TX_ROOT, HEADER_UNCLES_HASH, HEADER_DIFFICULTY, HEADER_WITHDRAWALS_ROOT = 4, 1, 7, 16


class InvalidAnswer(PeerMisbehaved):
    """A well-formed answer whose content contradicts what was asked (the peer lies)."""


def check_body(header_rlp: bytes, body_rlp: bytes) -> None:
    """Raise InvalidAnswer unless `body_rlp` (`[txs, uncles]` or `[txs, uncles, withdrawals]`)
    has the transactions root, uncles hash and withdrawals root of `header_rlp`."""
    header = wire.as_list(wire.decode(header_rlp, "block header"), "block header", 15)
    number = wire.as_int(header[8], "header number", 64)
    body = wire.as_list(wire.decode(body_rlp, "block body"), "block body", 2)
    transactions = wire.as_list(body[0], "body transactions")
    encoded = [tx if isinstance(tx, bytes) else wire.encode(tx) for tx in transactions]
    if ordered_trie_root(encoded) != wire.as_hash(header[HEADER_TX_ROOT], "transactions root"):
        raise InvalidAnswer(f"body of block #{number}: transactions do not match its root")
    uncles_hash = keccak256(wire.encode(wire.as_list(body[1], "body uncles")))
    if uncles_hash != wire.as_hash(header[HEADER_UNCLES_HASH], "uncles hash"):
        raise InvalidAnswer(f"body of block #{number}: uncles do not match the uncles hash")
    has_withdrawals = len(header) > HEADER_WITHDRAWALS_ROOT
    if has_withdrawals != (len(body) > 2):
        raise InvalidAnswer(f"body of block #{number}: withdrawals missing or unexpected")
    if has_withdrawals:
        withdrawals = [wire.encode(w) for w in wire.as_list(body[2], "body withdrawals")]
        expected = wire.as_hash(header[HEADER_WITHDRAWALS_ROOT], "withdrawals root")
        if ordered_trie_root(withdrawals) != expected:
            raise InvalidAnswer(f"body of block #{number}: withdrawals do not match their root")


def is_proof_of_work(header_rlp: bytes) -> bool:
    """True for a header with nonzero difficulty: a block from before the merge."""
    header = wire.as_list(wire.decode(header_rlp, "block header"), "block header", 15)
    return wire.as_int(header[HEADER_DIFFICULTY], "header difficulty") != 0
