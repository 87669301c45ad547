"""Interop with EthereumJS (/work/shared/peers/serve): our RLPx, Hello, eth/68 Status with fork
ids both ways, header/body/receipt download checked against chain.rlp; and the reverse, their
probe.mjs against our serving side."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from collections.abc import Iterator

import pytest
import rlp
from coincurve import PrivateKey
from trie import HexaryTrie

from khipu import cli
from khipu.chain.forkid import ForkPoints
from khipu.p2p import session as p2p
from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.discv4.service import start_discovery
from khipu.p2p.errors import DisconnectReason, PeerDisconnected
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.messages import HeaderRequest, header_facts
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import Enode, keccak256, public_key_bytes
from khipu.p2p.server import listen
from tests.conftest import require_testdata
from tests.integration.p2p_peers import ServingPeer, installed_peer, start_serving_peer
from tests.unit.p2p.chainfile import MemoryChain

ETH_CAPS = eth.capabilities()  # we offer eth/69 and eth/68; EthereumJS speaks up to eth/68


@pytest.fixture(scope="module")
def chain() -> MemoryChain:
    folder = require_testdata("rpc-compat-prague")
    return MemoryChain(folder / "genesis.json", folder / "chain.rlp")


@pytest.fixture(scope="module")
def serving_peer() -> Iterator[ServingPeer]:
    folder = require_testdata("rpc-compat-prague")
    peer = start_serving_peer(folder / "genesis.json", folder / "chain.rlp")
    yield peer
    peer.stop()


async def connect(peer: ServingPeer, local: LocalChain) -> EthPeer:
    enode = Enode.parse(peer.enode)
    session = await p2p.dial(
        enode.ip, enode.tcp_port, PrivateKey(), enode.node_id, ETH_CAPS, "khipu-test"
    )
    assert session.remote_hello.client_id.startswith("ethjs-devp2p-serve")
    assert session.connection.compression  # both sides speak p2p v5
    shared = session.capability("eth")
    assert shared is not None and shared.version == 68  # the highest version both speak
    eth_peer = EthPeer(session, local)
    await eth_peer.exchange_status()
    return eth_peer


def receipts_root(receipts_rlp: bytes) -> bytes:
    trie = HexaryTrie(db={})
    for index, receipt in enumerate(rlp.decode(receipts_rlp)):
        trie[rlp.encode(index)] = receipt if isinstance(receipt, bytes) else rlp.encode(receipt)
    return bytes(trie.root_hash)


def test_status_fork_ids_agree(serving_peer: ServingPeer, chain: MemoryChain) -> None:
    local = LocalChain.from_reader(chain)
    assert serving_peer.fork_id.startswith("0x" + local.status().fork_id.fork_hash.hex())

    async def scenario() -> None:
        peer = await connect(serving_peer, local)  # at the same head: identical fork ids
        assert peer.remote_status is not None
        assert peer.remote_status.fork_id == local.status().fork_id
        assert peer.remote_status.head_hash == chain.hashes[45]
        assert peer.remote_status.total_difficulty == chain.head_total_difficulty()
        await peer.session.disconnect(DisconnectReason.CLIENT_QUITTING)

    asyncio.run(scenario())


def test_download_chain_from_ethereumjs(serving_peer: ServingPeer, chain: MemoryChain) -> None:
    # We sync from genesis, as a fresh node would: our fork id is the genesis one.
    local = dataclasses.replace(
        LocalChain.from_reader(chain),
        head_hash=chain.genesis,
        head_number=0,
        head_time=0,
        total_difficulty=0x20000,
    )

    async def scenario() -> None:
        peer = await connect(serving_peer, local)
        runner = asyncio.create_task(peer.run())
        genesis = await peer.get_block_headers(HeaderRequest(0, 1))
        assert keccak256(genesis[0]) == chain.genesis
        headers = await peer.get_block_headers(HeaderRequest(1, 45))
        assert headers == [chain.headers[n] for n in range(1, 46)]
        backwards = await peer.get_block_headers(HeaderRequest(chain.hashes[45], 5, 9, True))
        assert [header_facts(h).number for h in backwards] == [45, 35, 25, 15, 5]
        hashes = [chain.hashes[n] for n in range(1, 46)]
        bodies = await peer.get_block_bodies(hashes)
        assert bodies == [chain.bodies[h] for h in hashes]
        receipts = await peer.get_receipts(hashes)
        assert len(receipts) == 45
        for number, receipt_list in zip(range(1, 46), receipts, strict=True):
            header_fields = rlp.decode(chain.headers[number])
            assert receipts_root(receipt_list) == header_fields[5], f"block {number}"
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(scenario())


def test_wrong_genesis_is_refused(serving_peer: ServingPeer, chain: MemoryChain) -> None:
    stranger = dataclasses.replace(LocalChain.from_reader(chain), genesis_hash=b"\x07" * 32)

    async def scenario() -> None:
        with pytest.raises(Exception) as caught:
            await connect(serving_peer, stranger)
        assert "genesis" in str(caught.value) or "disconnected" in str(caught.value)

    asyncio.run(scenario())


def test_probe_against_our_serving_side(serving_peer: ServingPeer, chain: MemoryChain) -> None:
    """EthereumJS's probe.mjs downloads from us; receipts and genesis come from the peer."""

    async def scenario() -> str:
        # Complete our in-memory chain with what chain.rlp lacks: genesis header and receipts.
        client = await connect(serving_peer, LocalChain.from_reader(chain))
        runner = asyncio.create_task(client.run())
        genesis = (await client.get_block_headers(HeaderRequest(0, 1)))[0]
        hashes = [chain.hashes[n] for n in range(1, 46)]
        receipts = await client.get_receipts(hashes)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        full = FullChain(chain, genesis, dict(zip(hashes, receipts, strict=True)))

        key = PrivateKey()
        ended: list[object] = []

        async def on_session(session: p2p.Session) -> None:
            peer = EthPeer(session, LocalChain.from_reader(full), full)
            try:
                await peer.exchange_status()
            except Exception as exc:
                ended.append(exc)
                raise
            ended.append(await peer.run())

        server = await listen("127.0.0.1", 0, key, ETH_CAPS, on_session, "khipu-test")
        port = server.sockets[0].getsockname()[1]
        discovery = await start_discovery(key, "127.0.0.1", port)  # probe pings us first
        enode = f"enode://{public_key_bytes(key).hex()}@127.0.0.1:{port}"
        probe = await asyncio.create_subprocess_exec(
            "node",
            "probe.mjs",
            enode,
            "10",
            cwd=installed_peer("serve"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(probe.communicate(), 60)
        server.close()
        discovery.close()
        text = output.decode()
        assert probe.returncode == 0, f"{text}\nour side ended with: {ended}"
        return text

    text = asyncio.run(scenario())
    assert "discv4 PING->PONG ok" in text and "matches-enode=true" in text
    assert "RLPx handshake + Hello ok: p2p v5" in text
    assert "GetBlockHeaders(origin=0, amount=10) -> 10 headers" in text
    assert "GetBlockBodies(10) -> 10 bodies" in text
    assert "receipts root check: 10/10 blocks match" in text


class FullChain(MemoryChain):
    """The test chain plus its genesis header and receipts."""

    def __init__(self, base: MemoryChain, genesis: bytes, receipts: dict[bytes, bytes]) -> None:
        self.__dict__.update(base.__dict__)
        self.headers = {0: genesis, **base.headers}
        self.hashes = {0: keccak256(genesis), **base.hashes}
        self.by_hash = {keccak256(genesis): genesis, **base.by_hash}
        self.bodies = {keccak256(genesis): b"\xc2\xc0\xc0", **base.bodies}
        self.receipts = {keccak256(genesis): b"\xc0", **receipts}


def test_discv4_with_ethereumjs(serving_peer: ServingPeer) -> None:
    enode = Enode.parse(serving_peer.enode)
    endpoint = Endpoint(enode.ip, enode.udp_port, enode.tcp_port)

    async def scenario() -> None:
        ours = await start_discovery(PrivateKey(), "127.0.0.1", 0)
        try:
            pong = await ours.ping(endpoint, enode.node_id)
            assert pong.recipient.udp_port == ours.endpoint.udp_port
            assert ours.table.get(enode.node_id) is not None
            await ours.bond(endpoint, enode.node_id)
            neighbours = await ours.find_node(endpoint, enode.node_id, ours.node_id)
            # their table holds at most us; what matters is a well-formed, signed answer
            assert all(len(n.node_id) == 64 for n in neighbours)
        finally:
            ours.close()

    asyncio.run(scenario())


def test_cli_against_ethereumjs(
    serving_peer: ServingPeer, chain: MemoryChain, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = require_testdata("rpc-compat-prague")
    assert cli.main(["devp2p", "rlpx", "ping", serving_peer.enode, "--json"]) == 0
    hello = json.loads(capsys.readouterr().out)
    assert hello["ok"] and hello["p2p_version"] == 5 and "eth/68" in hello["shared"]
    assert cli.main(["devp2p", "discv4", "ping", serving_peer.enode, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    args = ["devp2p", "eth", "headers", serving_peer.enode, "--from", "3", "--count", "4"]
    args += ["--genesis", str(folder / "genesis.json")]
    assert cli.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [h["hash"] for h in result["headers"]] == [
        "0x" + chain.hashes[n].hex() for n in (3, 4, 5, 6)
    ]
    wrong = [*args[:-1], str(require_testdata("ethtest", "genesis.json")), "--json"]
    assert cli.main(wrong) == 1
    failure = json.loads(capsys.readouterr().out)
    assert failure["kind"] == "IncompatiblePeer" and "genesis" in failure["error"]


def test_ethereumjs_rejects_our_stale_fork_id(
    serving_peer: ServingPeer, chain: MemoryChain
) -> None:
    """Their side of the fork id check: a Status whose fork id lacks Prague is refused."""
    local = LocalChain.from_reader(chain)
    without_prague = ForkPoints(chain.genesis, chain.forks.blocks, chain.forks.times[:-1])
    stale = dataclasses.replace(local.status(), fork_id=without_prague.fork_id(45, 450))
    assert stale.fork_id != local.status().fork_id

    async def scenario() -> PeerDisconnected:
        enode = Enode.parse(serving_peer.enode)
        session = await p2p.dial(enode.ip, enode.tcp_port, PrivateKey(), enode.node_id, ETH_CAPS)
        await session.send("eth", eth.STATUS, stale.encode())
        try:
            while True:
                await asyncio.wait_for(session.receive(), 10)
        except PeerDisconnected as exc:
            return exc

    ended = asyncio.run(scenario())
    assert ended.reason == DisconnectReason.SUBPROTOCOL_SPECIFIC
