"""The node's devp2p host on 127.0.0.1: serves eth from a chain, refuses peers over --maxpeers,
bonds with boot nodes over discv4, and says goodbye to its peers when it stops."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from coincurve import PrivateKey

from khipu.p2p import session as p2p
from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.discv4.service import start_discovery
from khipu.p2p.errors import DisconnectReason, PeerDisconnected
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.host import P2PConfig, P2PHost, P2PUnavailable
from khipu.p2p.keys import Enode
from tests.conftest import require_testdata
from tests.integration.p2p_hosts import running_host
from tests.unit.p2p.chainfile import MemoryChain

CAPS = {eth.ETH68: eth.MESSAGE_COUNT}


@pytest.fixture(scope="module")
def prague_chain() -> MemoryChain:
    folder = require_testdata("rpc-compat-prague")
    return MemoryChain(folder / "genesis.json", folder / "chain.rlp")


async def _eth_peer(enode: Enode, chain: MemoryChain) -> EthPeer:
    session = await p2p.dial(enode.ip, enode.tcp_port, PrivateKey(), enode.node_id, CAPS)
    return EthPeer(session, LocalChain.from_reader(chain))


def _wait_until(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_host_serves_refuses_over_maxpeers_and_says_goodbye(prague_chain: MemoryChain) -> None:
    # maxpeers 3: one dialled slot, two inbound (geth's dial ratio)
    config = P2PConfig(port=0, discovery=False, max_peers=3)
    with running_host(prague_chain, config) as running:
        host, enode = running.host, running.enode

        async def first_peer() -> EthPeer:
            peer = await _eth_peer(enode, prague_chain)
            status = await peer.exchange_status()
            assert status.head_hash == prague_chain.hashes[45]
            return peer

        async def scenario() -> tuple[DisconnectReason | int | None, DisconnectReason | int | None]:
            peers = [await first_peer(), await first_peer()]
            runners = [asyncio.create_task(peer.run()) for peer in peers]
            headers = await peers[0].get_block_headers(eth.HeaderRequest(1, 3))
            assert headers == [prague_chain.headers[n] for n in (1, 2, 3)]
            assert await asyncio.to_thread(_wait_until, lambda: host.peer_count() == 2)
            info = host.node_info()
            assert info["listening"] is True and info["peers"] == 2
            connected = host.peer_infos()[0]  # admin_peers
            assert connected["protocols"]["eth"]["version"] == 68  # type: ignore[index]
            assert len(str(connected["id"])) == 64 and str(connected["name"]).startswith("khipu")
            assert str(connected["enode"]).startswith("enode://")
            assert connected["network"]["inbound"] is True  # type: ignore[index]
            third = await _eth_peer(enode, prague_chain)
            with pytest.raises(PeerDisconnected) as refused:
                await third.exchange_status()
            assert running.metric("khipu_p2p_refused_total", reason="too_many_peers") == 1
            await asyncio.to_thread(host.stop)  # the peers are told we quit
            ended = await asyncio.wait_for(runners[0], 10)
            assert isinstance(ended, PeerDisconnected)
            return refused.value.reason, ended.reason

        too_many, quitting = asyncio.run(scenario())
        assert too_many == DisconnectReason.TOO_MANY_PEERS
        assert quitting == DisconnectReason.CLIENT_QUITTING
    with socket.socket() as again:  # the port is free once stopped (TIME_WAIT aside)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", enode.tcp_port))
        again.listen()


def test_host_bonds_with_its_bootnodes(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        boot_key = PrivateKey()
        boot = await start_discovery(boot_key, "127.0.0.1", 0)
        try:
            boot_enode = Enode(
                boot.node_id, "127.0.0.1", boot.endpoint.tcp_port, boot.endpoint.udp_port
            )
            config = P2PConfig(port=0, bootnodes=(str(boot_enode),))
            # the host serves discv4; its Discovery actor (started by running_host) bonds
            running = running_host(prague_chain, config)
            enode = (await asyncio.to_thread(running.__enter__)).enode
            try:
                for _ in range(200):
                    if boot.table.get(enode.node_id) is not None:
                        break
                    await asyncio.sleep(0.05)
                node = boot.table.get(enode.node_id)
                assert node is not None, "the host never bonded with its boot node"
                assert node.endpoint.udp_port == enode.udp_port
                # and the host answers discv4 itself, with a fork id in its record
                pong = await boot.ping(
                    Endpoint("127.0.0.1", enode.udp_port, enode.tcp_port), enode.node_id
                )
                assert pong.enr_seq is not None
                record = await boot.request_enr(
                    Endpoint("127.0.0.1", enode.udp_port, enode.tcp_port), enode.node_id
                )
                assert record.fork_id == LocalChain.from_reader(prague_chain).status().fork_id
            finally:
                await asyncio.to_thread(running.__exit__, None, None, None)
        finally:
            boot.close()

    asyncio.run(scenario())


def test_a_busy_port_and_a_bad_bootnode_are_reported(prague_chain: MemoryChain) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = P2PHost(P2PConfig(port=port), PrivateKey(), prague_chain)
        with pytest.raises(P2PUnavailable, match=str(port)):
            host.start()
    with pytest.raises(P2PUnavailable, match="bootnodes"):
        P2PHost(P2PConfig(bootnodes=("enode://nothex@1.2.3.4:1",)), PrivateKey(), prague_chain)


class _FlakyChain(MemoryChain):
    """The test chain, unreadable while `broken` (as the store is while the writer restarts)."""

    def __init__(self, base: MemoryChain) -> None:
        self.__dict__.update(base.__dict__)
        self.broken = False

    def header_by_number(self, number: int) -> bytes | None:
        if self.broken:
            raise RuntimeError("the store is not open (the storage writer is restarting)")
        return super().header_by_number(number)


def test_a_store_error_ends_that_peer_only(prague_chain: MemoryChain) -> None:
    chain = _FlakyChain(prague_chain)
    with running_host(chain, P2PConfig(port=0, discovery=False)) as running:
        _store_error_scenario(chain, prague_chain, running.enode)


def _store_error_scenario(chain: _FlakyChain, prague_chain: MemoryChain, enode: Enode) -> None:

    async def request_headers() -> list[bytes]:
        peer = await _eth_peer(enode, prague_chain)
        await peer.exchange_status()
        runner = asyncio.create_task(peer.run())
        try:
            return await peer.get_block_headers(eth.HeaderRequest(2, 2), timeout=10)
        finally:
            await peer.session.disconnect(DisconnectReason.CLIENT_QUITTING)
            await asyncio.gather(runner, return_exceptions=True)

    chain.broken = True
    with pytest.raises(PeerDisconnected):
        asyncio.run(request_headers())
    chain.broken = False
    assert asyncio.run(request_headers()) == [prague_chain.headers[2], prague_chain.headers[3]]
