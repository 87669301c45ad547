"""The bad list survives restarts: a peer dropped for breaking the protocol is refused by the
node started afresh over the same datadir file, and by a PeerManager its supervisor restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey

from khipu.p2p import session as p2p
from khipu.p2p.errors import DisconnectReason, PeerDisconnected
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.host import P2PConfig
from khipu.p2p.keys import Enode, public_key_bytes
from khipu.p2p.peers import bad_list_file
from tests.conftest import require_testdata
from tests.integration.p2p_hosts import RunningHost, running_host, wait_for
from tests.unit.p2p.chainfile import MemoryChain

LOCAL = P2PConfig(port=0, discovery=False, max_peers=10)


@pytest.fixture(scope="module")
def prague_chain() -> MemoryChain:
    folder = require_testdata("rpc-compat-prague")
    return MemoryChain(folder / "genesis.json", folder / "chain.rlp")


async def connect(enode: Enode, chain: MemoryChain, key: PrivateKey) -> tuple[EthPeer, Any]:
    session = await p2p.dial(enode.ip, enode.tcp_port, key, enode.node_id, eth.capabilities())
    peer = EthPeer(session, LocalChain.from_reader(chain), chain)
    await peer.exchange_status()
    return peer, asyncio.create_task(peer.run())


async def misbehave(running: RunningHost, chain: MemoryChain, key: PrivateKey) -> None:
    """Connect with `key`, break the protocol, and see it refused on return."""
    peer, run = await connect(running.enode, chain, key)
    await peer.session.send("eth", eth.GET_BLOCK_BODIES, b"\x01")  # not a request
    ended = await asyncio.wait_for(run, 20)
    assert isinstance(ended, PeerDisconnected)
    assert ended.reason == DisconnectReason.BREACH_OF_PROTOCOL


async def refused(running: RunningHost, chain: MemoryChain, key: PrivateKey) -> Any:
    with pytest.raises(PeerDisconnected) as caught:
        await connect(running.enode, chain, key)
    return caught.value.reason


def test_a_bad_peer_is_still_refused_after_the_node_restarts(
    prague_chain: MemoryChain, tmp_path: Path
) -> None:
    path = tmp_path / bad_list_file.FILE_NAME
    node_key, bad_key, good_key = PrivateKey(), PrivateKey(), PrivateKey()
    with running_host(prague_chain, LOCAL, key=node_key, bad_list_path=path) as running:
        asyncio.run(misbehave(running, prague_chain, bad_key))
        wait_for(path.exists, 20, "the bad list file")
    [stored] = bad_list_file.load(path)
    assert stored.node_id == public_key_bytes(bad_key)
    assert "0x05" in stored.reason  # why: the malformed GetBlockBodies

    with running_host(prague_chain, LOCAL, key=node_key, bad_list_path=path) as again:

        async def scenario() -> None:
            assert await refused(again, prague_chain, bad_key) == DisconnectReason.USELESS_PEER
            good, run = await connect(again.enode, prague_chain, good_key)  # others still served
            headers = await good.get_block_headers(eth.HeaderRequest(1, 2))
            assert headers == [prague_chain.headers[1], prague_chain.headers[2]]
            await good.session.disconnect(DisconnectReason.CLIENT_QUITTING)
            await asyncio.gather(run, return_exceptions=True)

        asyncio.run(scenario())
        assert again.host.board.summary()["bad_listed"] == 1


def test_a_restarted_peer_manager_reads_the_bad_list_back(
    prague_chain: MemoryChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from khipu.p2p.peers.manager import PeerManager

    path = tmp_path / bad_list_file.FILE_NAME
    bad_key = PrivateKey()
    with running_host(prague_chain, LOCAL, bad_list_path=path) as running:
        asyncio.run(misbehave(running, prague_chain, bad_key))
        wait_for(path.exists, 20, "the bad list file")

        def broken_tick(self: PeerManager) -> None:
            monkeypatch.undo()  # fail once: the next incarnation ticks normally
            raise RuntimeError("injected PeerManager crash")

        monkeypatch.setattr(PeerManager, "_tick", broken_tick)

        def restarted() -> bool:
            slot = running.tree.table.find("PeerManager")
            return slot is not None and slot.incarnation == 2

        wait_for(restarted, 20, "the PeerManager's restart")
        reason = None
        for _ in range(100):  # until the new incarnation answers admissions
            try:
                reason = asyncio.run(refused(running, prague_chain, bad_key))
            except pytest.fail.Exception:  # admitted: the old list was lost (fails below)
                continue
            if reason == DisconnectReason.USELESS_PEER:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert reason == DisconnectReason.USELESS_PEER
