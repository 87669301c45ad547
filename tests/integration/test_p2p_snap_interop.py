"""snap/1 against EthereumJS serve.mjs --snap: page through the head state's accounts with range
proofs verified by our checker, then fetch bytecodes and a storage range."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from coincurve import PrivateKey

from khipu.p2p import session as p2p
from khipu.p2p import wire
from khipu.p2p.errors import DisconnectReason
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import Enode, keccak256
from khipu.p2p.snap import messages as snap
from tests.conftest import require_testdata
from tests.integration.p2p_peers import ServingPeer, start_serving_peer
from tests.unit.p2p.chainfile import MemoryChain

CAPS = {eth.ETH68: eth.MESSAGE_COUNT, snap.SNAP1: snap.MESSAGE_COUNT}


@pytest.fixture(scope="module")
def snap_peer() -> Iterator[ServingPeer]:
    folder = require_testdata("rpc-compat-prague")
    peer = start_serving_peer(folder / "genesis.json", folder / "chain.rlp", "--snap")
    yield peer
    peer.stop()


def test_account_range_paging_with_proofs(snap_peer: ServingPeer) -> None:
    folder = require_testdata("rpc-compat-prague")
    chain = MemoryChain(folder / "genesis.json", folder / "chain.rlp")
    state_root = wire.as_bytes(wire.as_list(wire.decode(chain.head_header()), "header")[3], "root")

    async def scenario() -> None:
        enode = Enode.parse(snap_peer.enode)
        session = await p2p.dial(enode.ip, enode.tcp_port, PrivateKey(), enode.node_id, CAPS)
        assert session.capability("snap") is not None
        peer = EthPeer(session, LocalChain.from_reader(chain))
        await peer.exchange_status()
        runner = asyncio.create_task(peer.run())
        origin, pages, accounts = b"\0" * 32, 0, []
        while True:
            page = await peer.get_account_range(state_root, origin, response_bytes=3000)
            more = snap.verify_account_range(state_root, origin, page)
            accounts.extend(page.accounts)
            pages += 1
            if not more:
                break
            origin = (int.from_bytes(page.accounts[-1][0], "big") + 1).to_bytes(32, "big")
        assert pages > 1  # the small response size forces paging
        assert len({h for h, _ in accounts}) == len(accounts) > 10
        bodies = [wire.as_list(wire.decode(body), "account") for _, body in accounts]
        code_hashes = [wire.as_bytes(b[3], "code") for b in bodies if b[3]][:4]
        codes = await peer.get_byte_codes(code_hashes)
        assert [keccak256(code) for code in codes] == code_hashes
        with_storage = [
            (h, wire.as_bytes(b[2], "root"))
            for (h, _), b in zip(accounts, bodies, strict=True)
            if b[2]
        ]
        account_hash, storage_root = with_storage[0]
        ranges = await peer.get_storage_ranges(state_root, [account_hash])
        assert len(ranges.slots) == 1 and ranges.slots[0]
        more = snap.verify_storage_range(
            storage_root, b"\0" * 32, ranges.slots[0], list(ranges.proof)
        )
        assert not more
        assert await peer.get_trie_nodes(state_root, [[b""]]) == [None]  # not served by this peer
        await peer.session.disconnect(DisconnectReason.CLIENT_QUITTING)
        await asyncio.wait_for(runner, 5)

    asyncio.run(scenario())
