"""The PeerManager on 127.0.0.1, in-process: hostile peers are disconnected, bad-listed and
refused on return while the node keeps serving; a crashed peer actor drops only its peer; slow
and useless peers lose score; maxpeers holds on dial; simultaneous dials end in one connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from coincurve import PrivateKey

from khipu.p2p import session as p2p
from khipu.p2p import wire
from khipu.p2p.errors import DisconnectReason, PeerDisconnected
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.host import P2PConfig
from khipu.p2p.keys import Enode, public_key_bytes
from khipu.p2p.peers.peer_actor import PeerActor
from tests.conftest import require_testdata
from tests.integration.p2p_hosts import RunningHost, running_host, wait_for
from tests.integration.p2p_peers import free_port
from tests.unit.p2p.chainfile import MemoryChain

CAPS = {eth.ETH68: eth.MESSAGE_COUNT}
LOCAL = P2PConfig(port=0, discovery=False, max_peers=10)


@pytest.fixture(scope="module")
def prague_chain() -> MemoryChain:
    folder = require_testdata("rpc-compat-prague")
    return MemoryChain(folder / "genesis.json", folder / "chain.rlp")


class LyingChain(MemoryChain):
    """Serves the test chain but answers a header by hash with another block's header."""

    def __init__(self, base: MemoryChain) -> None:
        self.__dict__.update(base.__dict__)

    def header_by_hash(self, block_hash: bytes) -> bytes | None:
        return self.headers[3] if block_hash in self.by_hash else None


async def connect(
    enode: Enode,
    chain: MemoryChain,
    serving: Any = None,
    key: PrivateKey | None = None,
    server: Callable[[int, bytes], Awaitable[tuple[int, bytes] | None]] | None = None,
) -> tuple[EthPeer, asyncio.Task[Any]]:
    """A test client past Status, its message loop running (serving from `serving`)."""
    session = await p2p.dial(enode.ip, enode.tcp_port, key or PrivateKey(), enode.node_id, CAPS)
    peer = EthPeer(session, LocalChain.from_reader(chain), serving, server=server)
    await peer.exchange_status()
    return peer, asyncio.create_task(peer.run())


def summary(running: RunningHost) -> dict[str, Any]:
    return running.host.board.summary()


def test_a_peer_lying_about_headers_is_dropped_bad_listed_and_refused_on_return(
    prague_chain: MemoryChain,
) -> None:
    liar_key = PrivateKey()
    with running_host(prague_chain, LOCAL) as running:

        async def scenario() -> None:
            honest, honest_run = await connect(running.enode, prague_chain, prague_chain)
            _liar, liar_run = await connect(
                running.enode, prague_chain, LyingChain(prague_chain), liar_key
            )
            ended = await asyncio.wait_for(liar_run, 20)  # the node asked for its head: a lie
            assert isinstance(ended, PeerDisconnected)
            assert ended.reason == DisconnectReason.BREACH_OF_PROTOCOL
            with pytest.raises(PeerDisconnected) as refused:
                await connect(running.enode, prague_chain, prague_chain, liar_key)
            assert refused.value.reason == DisconnectReason.USELESS_PEER
            # the node goes on serving the honest peer
            headers = await honest.get_block_headers(eth.HeaderRequest(10, 2))
            assert headers == [prague_chain.headers[10], prague_chain.headers[11]]
            await honest.session.disconnect(DisconnectReason.CLIENT_QUITTING)
            await asyncio.gather(honest_run, return_exceptions=True)

        asyncio.run(scenario())
        assert summary(running)["bad_listed"] == 1
        assert running.metric("khipu_p2p_offences_total", offence="lying") == 1
        assert running.metric("khipu_p2p_refused_total", reason="useless_peer") == 1


def test_a_peer_sending_garbage_is_disconnected_and_bad_listed(prague_chain: MemoryChain) -> None:
    key = PrivateKey()
    with running_host(prague_chain, LOCAL) as running:

        async def scenario() -> None:
            peer, run = await connect(running.enode, prague_chain, prague_chain, key)
            await peer.session.send("eth", eth.GET_BLOCK_HEADERS, b"\xff\x00garbage")
            ended = await asyncio.wait_for(run, 20)
            assert isinstance(ended, PeerDisconnected)
            assert ended.reason == DisconnectReason.BREACH_OF_PROTOCOL
            await asyncio.to_thread(wait_for, lambda: summary(running)["bad_listed"] == 1)
            with pytest.raises(PeerDisconnected) as refused:
                await connect(running.enode, prague_chain, prague_chain, key)
            assert refused.value.reason == DisconnectReason.USELESS_PEER

        asyncio.run(scenario())
        assert running.metric("khipu_p2p_offences_total", offence="malformed") == 1


def test_a_crash_in_a_peer_actor_drops_only_that_peer(
    prague_chain: MemoryChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = PeerActor.serve

    def serve(self: PeerActor, code: int, payload: bytes) -> Any:
        _, body = eth.decode_request(payload, "test")
        if code == eth.GET_BLOCK_HEADERS and eth.HeaderRequest.decode_query(body).origin == 40:
            raise RuntimeError("injected crash")
        return original(self, code, payload)

    monkeypatch.setattr(PeerActor, "serve", serve)
    with running_host(prague_chain, LOCAL) as running:

        async def scenario() -> None:
            victim, victim_run = await connect(running.enode, prague_chain, prague_chain)
            other, other_run = await connect(running.enode, prague_chain, prague_chain)
            await asyncio.to_thread(wait_for, lambda: running.host.peer_count() == 2)
            request = wire.encode([7, eth.HeaderRequest(40, 1).encode_query()])
            await victim.session.send("eth", eth.GET_BLOCK_HEADERS, request)
            ended = await asyncio.wait_for(victim_run, 20)
            assert isinstance(ended, PeerDisconnected)
            assert ended.reason == DisconnectReason.TCP_SUBSYSTEM_ERROR
            headers = await other.get_block_headers(eth.HeaderRequest(41, 1))
            assert headers == [prague_chain.headers[41]]
            await asyncio.to_thread(wait_for, lambda: running.host.peer_count() == 1)
            assert not other_run.done()
            await other.session.disconnect(DisconnectReason.CLIENT_QUITTING)

        asyncio.run(scenario())
        # both peer actors gone (the second once its PeerLeft is handled), the manager answering
        wait_for(lambda: running.manager().call("peer_actor_names") == [], what="no peer actors")
        assert summary(running)["bad_listed"] == 0  # our crash is not the peer's fault


def test_slow_and_useless_peers_lose_score_but_stay(prague_chain: MemoryChain) -> None:
    async def never(code: int, payload: bytes) -> tuple[int, bytes] | None:
        await asyncio.sleep(3600)
        return None

    with running_host(prague_chain, LOCAL, request_timeout=0.5) as running:

        async def scenario() -> None:
            slow, slow_run = await connect(running.enode, prague_chain, server=never)
            useless, useless_run = await connect(running.enode, prague_chain, None)

            def scored() -> bool:
                scores = sorted(p["score"] for p in summary(running)["peer_list"])
                return scores == [-25, -20]

            await asyncio.to_thread(wait_for, scored, 20, "a slow and a useless score")
            assert not slow_run.done() and not useless_run.done()
            for peer in (slow, useless):
                await peer.session.disconnect(DisconnectReason.CLIENT_QUITTING)

        asyncio.run(scenario())
        assert running.metric("khipu_p2p_offences_total", offence="slow") == 1
        assert running.metric("khipu_p2p_offences_total", offence="useless") == 1


def test_maxpeers_caps_dials_and_simultaneous_dials_end_in_one_connection(
    prague_chain: MemoryChain,
) -> None:
    with (
        running_host(prague_chain, LOCAL) as a,
        running_host(prague_chain, LOCAL) as b,
        running_host(prague_chain, LOCAL) as c,
    ):
        targets = tuple(str(node.enode) for node in (a, b, c))
        # maxpeers 3 leaves one dialled slot: three static nodes, one connection
        capped = P2PConfig(port=0, discovery=False, max_peers=3, staticnodes=targets)
        with running_host(prague_chain, capped) as dialler:
            wait_for(lambda: dialler.host.peer_count() == 1, what="one dialled peer")
            assert dialler.metric("khipu_p2p_peers", direction="outbound") == 1
            assert summary(dialler)["outbound"] == 1
    # two nodes with each other as static nodes dial at once: one connection survives
    key_x, key_y = PrivateKey(), PrivateKey()
    port_x, port_y = free_port(), free_port()
    enode_x = Enode(public_key_bytes(key_x), "127.0.0.1", port_x, port_x)
    enode_y = Enode(public_key_bytes(key_y), "127.0.0.1", port_y, port_y)

    def config(port: int, other: Enode) -> P2PConfig:
        return P2PConfig(port=port, discovery=False, max_peers=10, staticnodes=(str(other),))

    with (
        running_host(prague_chain, config(port_x, enode_y), key=key_x) as x,
        running_host(prague_chain, config(port_y, enode_x), key=key_y) as y,
    ):
        wait_for(
            lambda: x.host.peer_count() == 1 and y.host.peer_count() == 1,
            what="x and y connected",
        )
        [xy] = x.host.peer_infos()
        [yx] = y.host.peer_infos()
        assert xy["network"]["inbound"] != yx["network"]["inbound"]  # type: ignore[index]
        assert x.metric("khipu_p2p_dials_total", outcome="connected") >= 1


class GrowingChain(MemoryChain):
    """The test chain with a head that a test moves (its blocks are mined up to #35, proof of
    stake from #36 on)."""

    def __init__(self, base: MemoryChain, head: int) -> None:
        self.__dict__.update(base.__dict__)
        self.head_number = head


@pytest.mark.parametrize(("head", "announces"), [(20, True), (40, False)])
def test_a_new_head_is_announced_before_the_merge_only(
    prague_chain: MemoryChain, head: int, announces: bool
) -> None:
    chain = GrowingChain(prague_chain, head)
    announced: list[list[tuple[bytes, int]]] = []

    def heard(code: int, payload: bytes) -> None:
        assert code == eth.NEW_BLOCK_HASHES
        announced.append(eth.decode_new_block_hashes(payload))

    with running_host(chain, LOCAL) as running:

        async def scenario() -> None:
            session = await p2p.dial(
                running.enode.ip, running.enode.tcp_port, PrivateKey(), running.enode.node_id, CAPS
            )
            peer = EthPeer(session, LocalChain.from_reader(prague_chain), prague_chain, heard)
            await peer.exchange_status()
            run = asyncio.create_task(peer.run())
            await asyncio.to_thread(wait_for, lambda: running.host.peer_count() == 1)
            await asyncio.sleep(0.3)  # the manager has seen the first head by now
            chain.head_number = head + 1
            if announces:
                await asyncio.to_thread(wait_for, lambda: bool(announced), 20, "NewBlockHashes")
            else:
                await asyncio.sleep(1.0)  # ten ticks: time enough to announce, if it did
            await session.disconnect(DisconnectReason.CLIENT_QUITTING)
            await asyncio.gather(run, return_exceptions=True)

        asyncio.run(scenario())
    assert announced == ([[(prague_chain.hashes[head + 1], head + 1)]] if announces else [])


def test_a_restarted_peer_manager_drops_the_old_peers_and_serves_new_ones(
    prague_chain: MemoryChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    from khipu.p2p.peers.manager import PeerManager

    with running_host(prague_chain, LOCAL) as running:

        async def scenario() -> None:
            old, old_run = await connect(running.enode, prague_chain, prague_chain)
            await asyncio.to_thread(wait_for, lambda: running.host.peer_count() == 1)
            assert len(await asyncio.to_thread(running.manager().call, "active_links")) == 1

            def broken_tick(self: PeerManager) -> None:
                monkeypatch.undo()  # fail once: the next incarnation ticks normally
                raise RuntimeError("injected PeerManager crash")

            monkeypatch.setattr(PeerManager, "_tick", broken_tick)
            ended = await asyncio.wait_for(old_run, 20)
            assert isinstance(ended, PeerDisconnected)
            assert ended.reason == DisconnectReason.CLIENT_QUITTING
            await asyncio.to_thread(wait_for, lambda: running.host.peer_count() == 0)
            new, new_run = await connect(running.enode, prague_chain, prague_chain)
            headers = await new.get_block_headers(eth.HeaderRequest(5, 1))
            assert headers == [prague_chain.headers[5]]
            await new.session.disconnect(DisconnectReason.CLIENT_QUITTING)
            await asyncio.gather(new_run, return_exceptions=True)
            del old

        asyncio.run(scenario())
        slot = running.tree.table.find("PeerManager")
        assert slot is not None and slot.incarnation == 2


class LyingBodies(MemoryChain):
    """Serves the test chain but, for one block, another block's (different) body."""

    def __init__(self, base: MemoryChain, victim: int, other: int) -> None:
        self.__dict__.update(base.__dict__)
        self.bodies = dict(base.bodies)
        self.bodies[base.hashes[victim]] = base.bodies[base.hashes[other]]


def test_bodies_off_their_roots_found_by_a_requester_get_the_peer_dropped(
    prague_chain: MemoryChain,
) -> None:
    from khipu.p2p.peers.requests import PeerRequests
    from khipu.p2p.peers.validation import InvalidAnswer

    bodies = [prague_chain.bodies[prague_chain.hashes[n]] for n in range(1, 46)]
    victim = next(n for n in range(2, 45) if bodies[n - 1] != bodies[n])  # differs from n+1
    liar_chain = LyingBodies(prague_chain, victim, victim + 1)
    with running_host(prague_chain, LOCAL) as running:

        async def scenario() -> None:
            peer, run = await connect(running.enode, prague_chain, liar_chain)
            await asyncio.to_thread(
                wait_for, lambda: [p["score"] for p in running.host.peer_infos()] == [2]
            )  # its head checked out: it lies about one block only
            manager = running.manager()
            [link] = await asyncio.to_thread(manager.call, "active_links")
            requests = PeerRequests(link, manager.tell)
            asked = eth.HeaderRequest(victim - 1, 3)
            headers = await asyncio.wrap_future(requests.headers(asked))
            assert headers == [prague_chain.headers[n] for n in (victim - 1, victim, victim + 1)]
            with pytest.raises(InvalidAnswer, match=f"block #{victim}"):
                await asyncio.wrap_future(requests.bodies(headers))
            ended = await asyncio.wait_for(run, 20)
            assert isinstance(ended, PeerDisconnected)
            assert ended.reason == DisconnectReason.BREACH_OF_PROTOCOL
            del peer

        asyncio.run(scenario())
        assert summary(running)["bad_listed"] == 1
        assert running.metric("khipu_p2p_offences_total", offence="lying") == 1


def test_a_bad_listed_peer_is_accepted_again_after_the_configured_expiry(
    prague_chain: MemoryChain,
) -> None:
    import dataclasses

    key = PrivateKey()
    config = dataclasses.replace(LOCAL, bad_peer_expiry=1.0)
    with running_host(prague_chain, config) as running:

        async def scenario() -> None:
            peer, run = await connect(running.enode, prague_chain, prague_chain, key)
            await peer.session.send("eth", eth.GET_BLOCK_BODIES, b"\x01")  # not a request
            await asyncio.wait_for(run, 20)
            with pytest.raises(PeerDisconnected) as refused:
                await connect(running.enode, prague_chain, prague_chain, key)
            assert refused.value.reason == DisconnectReason.USELESS_PEER
            for _ in range(100):  # a bound for a loaded machine; the expiry is 1 s
                await asyncio.sleep(0.2)
                try:
                    again, again_run = await connect(running.enode, prague_chain, prague_chain, key)
                except PeerDisconnected:
                    continue
                await again.session.disconnect(DisconnectReason.CLIENT_QUITTING)
                await asyncio.gather(again_run, return_exceptions=True)
                return
            pytest.fail("the peer was still refused long after its bad-list expiry")

        asyncio.run(scenario())
