"""What a peer actor checks in answers: a body against its header's roots; PoW heads only are
announced."""

from __future__ import annotations

import pytest

from khipu.p2p import wire
from khipu.p2p.peers.validation import InvalidAnswer, check_body, is_proof_of_work
from tests.unit.p2p.chainfile import MemoryChain


def block_with_transactions(chain: MemoryChain) -> tuple[bytes, bytes]:
    for number in sorted(chain.headers):
        header = chain.headers[number]
        body = chain.bodies[chain.hashes[number]]
        if wire.as_list(wire.decode(body), "body")[0]:
            return header, body
    raise AssertionError("no block with transactions in the test chain")


def test_every_body_of_the_chain_matches_its_header(prague_chain: MemoryChain) -> None:
    for number, header in prague_chain.headers.items():
        check_body(header, prague_chain.bodies[prague_chain.hashes[number]])


def test_bodies_that_do_not_match_are_lies(prague_chain: MemoryChain) -> None:
    header, body = block_with_transactions(prague_chain)
    txs, uncles, *rest = wire.as_list(wire.decode(body), "body")
    assert isinstance(txs, list)
    dropped_tx = wire.encode([txs[:-1], uncles, *rest])
    with pytest.raises(InvalidAnswer, match="transactions do not match"):
        check_body(header, dropped_tx)
    fake_uncle = wire.encode([txs, [wire.decode(header)], *rest])
    with pytest.raises(InvalidAnswer, match="uncles"):
        check_body(header, fake_uncle)
    assert rest == []  # the test chain's headers predate withdrawals
    unexpected_withdrawals = wire.encode([txs, uncles, []])
    with pytest.raises(InvalidAnswer, match="withdrawals"):
        check_body(header, unexpected_withdrawals)
    other_number = next(n for n, h in prague_chain.headers.items() if h != header)
    with pytest.raises(InvalidAnswer):
        check_body(prague_chain.headers[other_number], body)


def test_only_proof_of_work_headers_count_as_pre_merge(prague_chain: MemoryChain) -> None:
    header = prague_chain.headers[1]
    assert is_proof_of_work(header)  # the test chain is mined: nonzero difficulty
    fields = wire.as_list(wire.decode(header), "header")
    fields[7] = b""  # difficulty 0: a proof-of-stake block
    assert not is_proof_of_work(wire.encode(fields))
