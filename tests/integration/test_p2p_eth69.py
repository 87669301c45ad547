"""eth/69 between two of our hosts on 127.0.0.1, each with its PeerManager: they agree on eth/69,
headers, bodies and receipts download (the receipts, sent without blooms, rebuild every receipts
root of the imported chain), a moved head reaches the other side as BlockRangeUpdate; a host
configured eth/68-only still gets eth/68."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from khipu.chain.config import Genesis
from khipu.chain.era1 import ordered_trie_root
from khipu.chain.import_job import import_files
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.p2p import wire
from khipu.p2p.abc import ChainReader
from khipu.p2p.eth.messages import BlockRange, HeaderRequest, header_facts
from khipu.p2p.host import P2PConfig
from khipu.p2p.peers.connection import PeerLink
from khipu.p2p.peers.requests import PeerRequests
from khipu.p2p.store_reader import StoreChainReader
from khipu.storage.chain_store import ChainStore
from tests.conftest import require_testdata
from tests.integration.p2p_hosts import RunningHost, running_host, wait_for
from tests.unit.p2p.chainfile import MemoryChain

LOCAL = P2PConfig(port=0, discovery=False, max_peers=10)


@pytest.fixture(scope="module")
def prague_chain() -> MemoryChain:
    folder = require_testdata("rpc-compat-prague")
    return MemoryChain(folder / "genesis.json", folder / "chain.rlp")


@pytest.fixture(scope="module")
def store_reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreChainReader]:
    """The rpc-compat-prague chain imported into a datadir: served with its real receipts."""
    folder = require_testdata("rpc-compat-prague")
    genesis_json = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(genesis_json)
    store = ChainStore.open(tmp_path_factory.mktemp("eth69-store"), genesis, genesis_json)
    try:
        progress = ImportProgress(45, io.StringIO())
        rules = ChainRules(genesis.config)
        import_files(store, rules, [folder / "chain.rlp"], check_seal=False, progress=progress)
        yield StoreChainReader(store, genesis)
    finally:
        store.close()


def only_link(running: RunningHost) -> PeerLink:
    """The one active peer link of a host, once there is one."""
    links: list[Any] = []

    def linked() -> bool:
        links[:] = running.manager().call("active_links")
        return len(links) == 1

    wait_for(linked, 20, "one active peer")
    link: PeerLink = links[0]
    return link


def dialling(config: P2PConfig, target: RunningHost) -> P2PConfig:
    return dataclasses.replace(config, staticnodes=(str(target.enode),))


def test_two_hosts_agree_on_eth69_and_receipts_rebuild_every_root(
    store_reader: StoreChainReader, prague_chain: MemoryChain
) -> None:
    with (
        running_host(store_reader, LOCAL) as server,
        running_host(prague_chain, dialling(LOCAL, server)) as client,
    ):
        link = only_link(client)
        assert link.eth.version == 69
        assert link.eth.remote_status is not None
        assert link.eth.remote_status.total_difficulty is None  # eth/69 sends none
        assert link.eth.remote_range == BlockRange(0, 45, prague_chain.hashes[45])
        requests = PeerRequests(link, client.manager().tell)
        headers = requests.headers(HeaderRequest(0, 46)).result(20)
        assert headers[1:] == [prague_chain.headers[n] for n in range(1, 46)]
        bodies = requests.bodies(headers).result(20)  # each checked against its header
        assert len(bodies) == 46
        hashes = [header_facts(header).block_hash for header in headers]
        receipts = link.submit(lambda: link.eth.get_receipts(hashes)).result(20)
        assert len(receipts) == 46
        for header, block_receipts in zip(headers, receipts, strict=True):
            items = wire.as_list(wire.decode(block_receipts), "receipts")
            encoded = [r if isinstance(r, bytes) else wire.encode(r) for r in items]
            expected = wire.as_list(wire.decode(header), "header")[5]
            assert ordered_trie_root(encoded) == expected, header_facts(header).number
            assert block_receipts == store_reader.receipts_by_hash(header_facts(header).block_hash)
        assert sum(1 for r in receipts if wire.decode(r)) > 10  # blocks with transactions
        [peer] = server.host.peer_infos()  # admin_peers on the serving side
        assert peer["protocols"]["eth"]["version"] == 69  # type: ignore[index]
        assert "difficulty" not in peer["protocols"]["eth"]  # type: ignore[index,operator]


def test_an_eth68_only_host_gets_eth68(prague_chain: MemoryChain) -> None:
    eth68 = dataclasses.replace(LOCAL, eth_versions=(68,))
    with (
        running_host(prague_chain, LOCAL) as server,
        running_host(prague_chain, dialling(eth68, server)) as client,
    ):
        link = only_link(client)
        assert link.eth.version == 68
        assert link.eth.remote_status is not None
        assert link.eth.remote_status.total_difficulty == prague_chain.head_total_difficulty()
        assert link.eth.remote_range is None
        headers = link.submit(lambda: link.eth.get_block_headers(HeaderRequest(1, 3))).result(20)
        assert headers == [prague_chain.headers[n] for n in (1, 2, 3)]
        [peer] = server.host.peer_infos()
        assert peer["protocols"]["eth"]["version"] == 68  # type: ignore[index]


def test_a_moved_head_reaches_eth69_peers_as_block_range_update(
    prague_chain: MemoryChain,
) -> None:
    growing = copy.copy(prague_chain)
    growing.head_number = 10
    chain: ChainReader = growing
    with (
        running_host(chain, LOCAL) as server,
        running_host(prague_chain, dialling(LOCAL, server)) as client,
    ):
        link = only_link(client)
        assert link.eth.remote_range == BlockRange(0, 10, prague_chain.hashes[10])

        async def settle() -> None:
            await asyncio.sleep(0.5)  # the server's manager has seen head 10 by now

        asyncio.run(settle())
        growing.head_number = 20  # 10 blocks on: under the 32-block step, not announced yet
        asyncio.run(settle())
        assert link.eth.remote_range == BlockRange(0, 10, prague_chain.hashes[10])
        growing.head_number = 45  # 35 blocks past the last announced range
        wait_for(
            lambda: link.eth.remote_range == BlockRange(0, 45, prague_chain.hashes[45]),
            20,
            "BlockRangeUpdate",
        )
        wait_for(
            lambda: client.host.peer_infos()[0]["protocols"]["eth"]["latestBlock"] == 45,
            20,
            "the new range in admin_peers",
        )


def test_devp2p_tools_speak_either_version(
    prague_chain: MemoryChain, capsys: pytest.CaptureFixture[str]
) -> None:
    from khipu import cli

    folder = require_testdata("rpc-compat-prague")
    with running_host(prague_chain, LOCAL) as server:
        enode = str(server.enode)
        genesis = ["--genesis", str(folder / "genesis.json")]
        for offered, agreed in (([], 69), (["--eth", "68"], 68)):
            args = ["devp2p", "eth", "headers", enode, "--from", "44", "--count", "2", *genesis]
            assert cli.main([*args, *offered, "--json"]) == 0
            result = json.loads(capsys.readouterr().out)
            assert result["eth_version"] == agreed
            assert [h["number"] for h in result["headers"]] == [44, 45]
        assert cli.main(["devp2p", "rlpx", "ping", enode, "--json"]) == 0
        hello = json.loads(capsys.readouterr().out)
        assert "eth/69" in hello["shared"] and {"eth/68", "eth/69"} <= set(hello["capabilities"])
