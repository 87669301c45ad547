"""Full sync between two `khipu run` nodes on 127.0.0.1: A imports a 45-block chain from a file,
B starts empty with A as its static node and downloads, checks, executes and commits every block
from A until its head, state and receipts are A's. B says how far it is (khipu_health, eth_syncing,
`sync` log lines) and, restarted, resumes from its stored head."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import rlp
from coincurve import PrivateKey
from rlp.codec import consume_length_prefix

from khipu.p2p import session as p2p
from khipu.p2p.errors import DisconnectReason, PeerDisconnected
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import Enode
from tests.conftest import require_testdata
from tests.integration.node_helpers import rpc_result, wait_until
from tests.integration.test_node_p2p import RunningNode
from tests.unit.p2p.chainfile import MemoryChain

BLOCKS = 45


def at_head(url: str) -> bool:
    """True once the node's head is A's; an error (the writer restarting) is not there yet."""
    try:
        return bool(rpc_result(url, "eth_blockNumber") == hex(BLOCKS))
    except AssertionError:
        return False


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


def _common(suite: Path, datadir: Path) -> list[str]:
    return [
        *("--genesis", str(suite / "genesis.json"), "--datadir", str(datadir)),
        *("--http.port", "0", "--port", "0", "--nodiscover", "--no-seal-check"),
        *("--health.interval", "0.5"),  # progress lines every 0.5 s too
    ]


def _url(running: RunningNode) -> str:
    return running.wait_for(r'msg="json-rpc serving" url=(\S+)').group(1)


@pytest.fixture(scope="module")
def source(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Node A with the whole chain: (its enode, its RPC URL)."""
    folder = tmp_path_factory.mktemp("sync-source")
    a = RunningNode([*_common(suite, folder), "--nosync", "--import", str(suite / "chain.rlp")])
    try:
        enode = a.wait_for(r"devp2p serving.* enode=(enode://\S+)").group(1)
        url = _url(a)
        a.wait_for(rf'msg="import finished" head={BLOCKS}\b')
        yield enode, url
    finally:
        assert a.stop() == 0, "\n".join(a.lines[-20:])


def test_an_empty_node_syncs_the_whole_chain_from_its_peer_and_agrees_with_it(
    source: tuple[str, str], suite: Path, tmp_path: Path
) -> None:
    enode, a_url = source
    b = RunningNode([*_common(suite, tmp_path / "b"), "--staticnodes", enode])
    try:
        b_url = _url(b)
        b.wait_for(r'msg="sync starting" head=0 target=45\b')
        wait_until(
            lambda: rpc_result(b_url, "eth_blockNumber") == hex(BLOCKS), 180, "b at a's head"
        )
        b.wait_for(rf'msg="sync caught up" head={BLOCKS}\b')
        for number in (1, BLOCKS // 2, BLOCKS):
            tag = hex(number)
            a_block = rpc_result(a_url, "eth_getBlockByNumber", tag, True)
            b_block = rpc_result(b_url, "eth_getBlockByNumber", tag, True)
            assert b_block == a_block
            assert rpc_result(b_url, "eth_getBlockReceipts", tag) == rpc_result(
                a_url, "eth_getBlockReceipts", tag
            )
        miner = rpc_result(a_url, "eth_getBlockByNumber", hex(BLOCKS), False)["miner"]
        for tag in ("0x1", hex(BLOCKS)):  # archive state at an old block and at the head
            assert rpc_result(b_url, "eth_getBalance", miner, tag) == rpc_result(
                a_url, "eth_getBalance", miner, tag
            )
        health = rpc_result(b_url, "khipu_health")
        assert health["sync"]["stage"] == "sync" and health["sync"]["state"] == "synced"
        assert health["sync"]["head"] == BLOCKS and health["sync"]["starting_block"] == 0
        assert rpc_result(b_url, "eth_syncing") is False
        progress = [line for line in b.lines if 'msg="sync progress"' in line]
        assert progress and all("blocks_per_s=" in line and "eta_s=" in line for line in progress)
    finally:
        assert b.stop() == 0, "\n".join(b.lines[-20:])


def first_blocks(chain_file: Path, count: int, into: Path) -> Path:
    """A block file of the first `count` blocks of `chain_file` (made at test time)."""
    data, position = chain_file.read_bytes(), 0
    for _ in range(count):
        _prefix, _kind, length, start = consume_length_prefix(data, position)
        position = start + length
    into.write_bytes(data[:position])
    return into


def test_a_restarted_node_resumes_the_sync_from_its_stored_head(
    source: tuple[str, str], suite: Path, tmp_path: Path
) -> None:
    """B's first run stores blocks 1..20 (from a file, so the cut is exact) and stops; its
    second run, with A as its peer, asks for nothing before 21 and ends with A's chain."""
    enode, a_url = source
    datadir = tmp_path / "b"
    part = first_blocks(suite / "chain.rlp", 20, tmp_path / "first20.rlp")
    first = RunningNode([*_common(suite, datadir), "--nosync", "--import", str(part)])
    try:
        first.wait_for(r'msg="import finished" head=20\b')
    finally:
        assert first.stop() == 0, "\n".join(first.lines[-20:])
    again = RunningNode([*_common(suite, datadir), "--staticnodes", enode])
    try:
        url = _url(again)
        again.wait_for(r'msg="sync starting" head=20 target=45\b')
        wait_until(lambda: rpc_result(url, "eth_blockNumber") == hex(BLOCKS), 180, "b at a's head")
        head = rpc_result(url, "eth_getBlockByNumber", "latest", False)
        assert head == rpc_result(a_url, "eth_getBlockByNumber", "latest", False)
    finally:
        assert again.stop() == 0, "\n".join(again.lines[-20:])


def tampered_first_block(chain_file: Path, into: Path) -> Path:
    """Block 1 of `chain_file` with another state root: its body still matches its header's
    roots and it hangs from genesis, but executing it gives another state."""
    data = chain_file.read_bytes()
    _prefix, _kind, length, start = consume_length_prefix(data, 0)
    block = rlp.decode(data[: start + length])
    header = list(block[0])
    header[3] = bytes(31) + b"\x01"  # stateRoot
    into.write_bytes(rlp.encode([header, *block[1:]]))
    return into


def test_a_peer_serving_an_invalid_block_is_dropped_and_nothing_is_stored(
    suite: Path, tmp_path: Path
) -> None:
    chain = MemoryChain(
        suite / "genesis.json", tampered_first_block(suite / "chain.rlp", tmp_path / "bad.rlp")
    )
    b = RunningNode(_common(suite, tmp_path / "b"))
    key = PrivateKey()
    try:
        url = _url(b)
        enode = Enode.parse(b.wait_for(r"devp2p serving.* enode=(enode://\S+)").group(1))

        async def serve_the_bad_chain() -> object:
            caps = {eth.ETH68: eth.MESSAGE_COUNT}
            session = await p2p.dial(enode.ip, enode.tcp_port, key, enode.node_id, caps)
            peer = EthPeer(session, LocalChain.from_reader(chain), chain)
            await peer.exchange_status()
            return await asyncio.wait_for(peer.run(), 120)

        ended = asyncio.run(serve_the_bad_chain())
        assert isinstance(ended, PeerDisconnected)
        assert ended.reason == DisconnectReason.BREACH_OF_PROTOCOL
        b.wait_for(r"sync: peer \S+ \(khipu\) lying: invalid block")
        health = rpc_result(url, "khipu_health")
        assert health["p2p"]["bad_listed"] == 1
        assert rpc_result(url, "eth_blockNumber") == "0x0"  # nothing of the bad chain was stored
    finally:
        assert b.stop() == 0, "\n".join(b.lines[-20:])


def test_the_sync_survives_its_own_crash_and_the_writer_s_with_a_block_in_hand(
    source: tuple[str, str], suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Let it crash: RegularSync fails before its 11th block and the StorageWriter on its 31st;
    both are restarted, the sync asks the new writer for the stored head and goes on, and B ends
    with A's chain."""
    enode, a_url = source
    faults = "RegularSync.block=raise:1@10,StorageWriter.import_block=raise:1@30"
    monkeypatch.setenv("KHIPU_FAULTS", faults)
    b = RunningNode([*_common(suite, tmp_path / "b"), "--staticnodes", enode])
    try:
        url = _url(b)
        wait_until(lambda: at_head(url), 180, "b at a's head")
        head = rpc_result(url, "eth_getBlockByNumber", "latest", False)
        assert head == rpc_result(a_url, "eth_getBlockByNumber", "latest", False)
        fired = [line for line in b.lines if 'msg="fault injected: raise' in line]
        assert len(fired) == 2, fired
        restarts = {
            row["actor"]: row["restarts"] for row in rpc_result(url, "khipu_health")["actors"]
        }
        assert restarts["RegularSync"] == 1 and restarts["StorageWriter"] == 1
    finally:
        assert b.stop() == 0, "\n".join(b.lines[-20:])
