"""Peer policy without sockets: scores, the bad list's expiry, admission limits and duplicates,
and dial choices with backoff, all on a controlled clock."""

from __future__ import annotations

import random

import pytest

from khipu.actors.backoff import ExponentialBackoff
from khipu.p2p.errors import DisconnectReason
from khipu.p2p.keys import Enode
from khipu.p2p.peers.dialing import DialPlan
from khipu.p2p.peers.roster import Connection, Direction, PeerLimits, PeerRoster
from khipu.p2p.peers.scoring import PENALTIES, BadList, Offence, PeerScore
from tests.unit.p2p.chainfile import MemoryChain


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def node(n: int) -> bytes:
    return bytes([n]) * 64


def connection(n: int, direction: Direction, cid: int | None = None) -> Connection:
    return Connection(cid if cid is not None else n, node(n), direction, "127.0.0.1:1", "t")


# -- scoring -------------------------------------------------------------------------------------


def test_lying_once_drops_a_peer_but_one_timeout_does_not() -> None:
    liar, slow = PeerScore(node(1)), PeerScore(node(2))
    assert liar.penalise(Offence.LYING, "headers not chained") is True
    assert liar.last_offence is Offence.LYING and liar.dropped
    assert slow.penalise(Offence.SLOW, "timeout") is False
    assert slow.value == -PENALTIES[Offence.SLOW]


def test_repeated_slowness_reaches_the_threshold_and_good_answers_buy_slack() -> None:
    score = PeerScore(node(1), threshold=-100)
    drops = [score.penalise(Offence.SLOW) for _ in range(5)]
    assert drops == [False, False, False, False, True]
    seasoned = PeerScore(node(2), threshold=-100)
    for _ in range(100):
        seasoned.reward()
    assert seasoned.value == 50  # capped
    assert not any(seasoned.penalise(Offence.SLOW) for _ in range(7))


def test_bad_list_entries_expire_on_the_clock() -> None:
    clock = Clock()
    bad = BadList(expiry=600.0, clock=clock)
    bad.add(node(1), "lying")
    clock.now += 100
    bad.add(node(2), "slow")
    assert node(1) in bad and node(2) in bad and len(bad) == 2
    clock.now += 500  # node 1's 600 s are up, node 2 has 100 s left
    assert node(1) not in bad and node(2) in bad
    assert [e.node_id for e in bad.entries()] == [node(2)]
    clock.now += 100
    assert len(bad) == 0
    with pytest.raises(ValueError):
        BadList(expiry=-1)


# -- admission -----------------------------------------------------------------------------------


def roster(max_peers: int, local: int = 0x80, clock: Clock | None = None) -> PeerRoster:
    clock = clock or Clock()
    return PeerRoster(node(local), PeerLimits(max_peers), BadList(60.0, clock), clock)


def test_limits_split_like_geths_dial_ratio() -> None:
    assert (PeerLimits(50).max_dialled, PeerLimits(50).max_inbound) == (16, 34)
    assert (PeerLimits(1).max_dialled, PeerLimits(1).max_inbound) == (1, 0)
    assert (PeerLimits(0).max_dialled, PeerLimits(0).max_inbound) == (0, 0)


def test_inbound_share_and_maxpeers_are_enforced() -> None:
    peers = roster(3)  # 1 dialled, 2 inbound
    assert peers.admit(connection(1, Direction.INBOUND)).admitted
    assert peers.admit(connection(2, Direction.INBOUND)).admitted
    refused = peers.admit(connection(3, Direction.INBOUND))
    assert not refused.admitted and refused.reason is DisconnectReason.TOO_MANY_PEERS
    assert peers.admit(connection(4, Direction.OUTBOUND)).admitted
    full = peers.admit(connection(5, Direction.OUTBOUND))
    assert not full.admitted and full.reason is DisconnectReason.TOO_MANY_PEERS
    static = connection(6, Direction.INBOUND)
    static.static = True
    assert not peers.admit(static).admitted  # static peers skip the inbound share, not maxpeers
    peers.remove(1)
    assert peers.admit(static).admitted and peers.count() == 3


def test_a_bad_listed_node_is_refused_until_expiry() -> None:
    clock = Clock()
    peers = roster(10, clock=clock)
    peers.bad_list.add(node(1), "lying headers")
    refused = peers.admit(connection(1, Direction.INBOUND))
    assert not refused.admitted and refused.reason is DisconnectReason.USELESS_PEER
    assert "lying headers" in refused.why
    clock.now += 61
    assert peers.admit(connection(1, Direction.INBOUND)).admitted


@pytest.mark.parametrize(("local", "kept"), [(0x80, Direction.INBOUND), (0x01, Direction.OUTBOUND)])
def test_simultaneous_dials_keep_the_connection_of_the_lower_id(
    local: int, kept: Direction
) -> None:
    """Peer 0x40 and us dial each other: whatever order the two connections arrive in, both
    sides keep the one opened by the lower id (theirs when ours is 0x80, ours when 0x01)."""
    for first in (Direction.OUTBOUND, Direction.INBOUND):
        second = Direction.INBOUND if first is Direction.OUTBOUND else Direction.OUTBOUND
        peers = roster(10, local=0x80 if local == 0x80 else 0x01)
        assert peers.admit(connection(0x40, first, cid=1)).admitted
        answer = peers.admit(connection(0x40, second, cid=2))
        if second is kept:
            assert answer.admitted and answer.replaces == 1
            assert [c.connection_id for c in peers.connections.values()] == [2]
        else:
            assert not answer.admitted and answer.reason is DisconnectReason.ALREADY_CONNECTED
            assert [c.connection_id for c in peers.connections.values()] == [1]
    # the other side computes the same: for it, the directions are swapped
    other = roster(10, local=0x40)
    assert other.admit(connection(local, Direction.INBOUND, cid=1)).admitted
    swapped = other.admit(connection(local, Direction.OUTBOUND, cid=2))
    assert swapped.admitted == (kept is Direction.INBOUND)


# -- dialling ------------------------------------------------------------------------------------


def enode(n: int) -> Enode:
    return Enode(node(n), "127.0.0.1", 30000 + n, 30000 + n)


def plan(clock: Clock) -> DialPlan:
    backoff = ExponentialBackoff(initial=5.0, maximum=40.0, jitter=0.0)
    return DialPlan(backoff, redial_after=2.0, clock=clock, rng=random.Random(1))


def test_dials_fill_only_the_dialled_share_static_first() -> None:
    clock = Clock()
    peers, dials = roster(9, clock=clock), plan(clock)  # 3 dialled slots
    chosen = dials.choose(peers, [enode(9)], [enode(n) for n in range(1, 8)])
    assert len(chosen) == 3 and chosen[0] == enode(9)
    assert dials.choose(peers, [], [enode(n) for n in range(1, 8)]) == []  # all slots dialling
    for picked in chosen:
        dials.connected(picked.node_id)
        peers.admit(connection(picked.node_id[0], Direction.OUTBOUND))
    assert dials.choose(peers, [], [enode(n) for n in range(1, 8)]) == []  # all slots used


def test_failed_dials_back_off_exponentially_and_reset_after_success() -> None:
    clock = Clock()
    peers, dials = roster(3, clock=clock), plan(clock)
    waits = []
    for _ in range(5):
        [picked] = dials.choose(peers, [enode(1)], [])
        waits.append(dials.failed(picked.node_id))
        assert dials.choose(peers, [enode(1)], []) == []  # not before the wait is over
        clock.now += waits[-1]
    assert waits == [5.0, 10.0, 20.0, 40.0, 40.0]
    [picked] = dials.choose(peers, [enode(1)], [])
    dials.connected(picked.node_id)
    assert dials.failures(picked.node_id) == 0


def test_connected_bad_listed_and_own_nodes_are_not_dialled() -> None:
    clock = Clock()
    peers, dials = roster(30, clock=clock), plan(clock)
    peers.admit(connection(1, Direction.INBOUND))
    peers.bad_list.add(node(2), "lying")
    chosen = dials.choose(peers, [], [enode(1), enode(2), enode(0x80), enode(3)])
    assert chosen == [enode(3)]
    dials.ended(node(3))
    assert dials.choose(peers, [], [enode(3)]) == []  # held back for redial_after
    clock.now += 2.0
    assert dials.choose(peers, [], [enode(3)]) == [enode(3)]


def test_khipu_status_prints_a_p2p_line() -> None:
    from khipu.actors.status import format_status_table

    snapshot = {
        "ts": "2026-11-21T23:00:00Z",
        "actors": [],
        "p2p": {
            "peers": 1,
            "inbound": 0,
            "outbound": 1,
            "max_peers": 50,
            "bad_listed": 2,
            "peer_list": [
                {
                    "id": "be785a4f5cca91a2",
                    "name": "khipu",
                    "direction": "outbound",
                    "address": "127.0.0.1:36379",
                    "score": 2,
                }
            ],
        },
    }
    line = format_status_table(snapshot).splitlines()[-1]
    assert line == (
        "p2p: 1 peer (0 in, 1 out) of 50, 2 bad-listed; "
        "be785a4f5cca91a2 khipu out 127.0.0.1:36379 score 2"
    )


def test_discovered_nodes_of_another_chain_are_not_dialled(prague_chain: MemoryChain) -> None:
    from coincurve import PrivateKey

    from khipu.chain.forkid import ForkId
    from khipu.p2p.enr import make_record
    from khipu.p2p.eth.peer import LocalChain
    from khipu.p2p.host import dialable

    local = LocalChain.from_reader(prague_chain)
    ours = local.status().fork_id
    keys = [PrivateKey() for _ in range(3)]
    nodes = [enode(n) for n in (1, 2, 3, 4)]
    records = {
        nodes[0].node_id: make_record(keys[0], 1, fork_id=ours),
        nodes[1].node_id: make_record(keys[1], 1, fork_id=ForkId(b"\xde\xad\xbe\xef", 0)),
        nodes[2].node_id: make_record(keys[2], 1),  # no eth entry
    }  # node 4: no record fetched
    assert dialable(nodes, records, local) == [nodes[0], nodes[2], nodes[3]]


def test_a_lie_drops_even_a_peer_with_full_credit() -> None:
    for offence in (Offence.LYING, Offence.MALFORMED):
        seasoned = PeerScore(node(1))
        for _ in range(100):
            seasoned.reward()
        assert seasoned.penalise(offence, "one lie") is True
