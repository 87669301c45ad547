"""`khipu devp2p ...`: talk to one peer from the command line.

    khipu devp2p discv4 ping ENODE [--enr]
    khipu devp2p discv4 resolve ENODE [--bootnodes ENODES]
    khipu devp2p rlpx ping ENODE
    khipu devp2p eth headers ENODE --from N --count K (--network NAME | --genesis FILE)
    khipu devp2p eth download ENODE --genesis FILE [--from N --count K] (headers/s, bodies/s)
    khipu devp2p snap accounts ENODE --genesis FILE [--root HASH] [--bytes N] (accounts/s)
    khipu devp2p enode --datadir DIR [--host IP --port N]

All take `--json`. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

Output = dict[str, Any]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `devp2p` command and its sub-commands."""
    devp2p = subparsers.add_parser("devp2p", help="talk to a devp2p peer (discv4, RLPx, eth)")
    groups = devp2p.add_subparsers(dest="devp2p_group", metavar="PROTOCOL", required=True)

    discv4 = groups.add_parser("discv4", help="node discovery v4")
    discv4_commands = discv4.add_subparsers(dest="discv4_command", required=True)
    ping = discv4_commands.add_parser("ping", help="ping a node and wait for its pong")
    _common(ping)
    ping.add_argument("--enr", action="store_true", help="also fetch its node record")
    ping.set_defaults(handler=lambda args: _run(args, _discv4_ping))
    resolve = discv4_commands.add_parser(
        "resolve", help="find a node's current record: from the node, else by a DHT lookup"
    )
    _common(resolve)
    resolve.add_argument(
        "--bootnodes", default="", help="comma-separated enode URLs to look the node up through"
    )
    resolve.set_defaults(handler=lambda args: _run(args, _discv4_resolve))

    rlpx = groups.add_parser("rlpx", help="the RLPx transport")
    rlpx_commands = rlpx.add_subparsers(dest="rlpx_command", required=True)
    hello = rlpx_commands.add_parser("ping", help="handshake, print the peer's Hello, ping it")
    _common(hello)
    hello.set_defaults(handler=lambda args: _run(args, _rlpx_ping))

    eth = groups.add_parser("eth", help="the eth protocol (eth/69 or eth/68)")
    eth_commands = eth.add_subparsers(dest="eth_command", required=True)
    headers = eth_commands.add_parser("headers", help="download block headers")
    _common(headers)
    headers.add_argument("--from", dest="start", type=int, required=True, help="first block")
    headers.add_argument("--count", type=int, default=16, help="number of headers")
    chain = headers.add_mutually_exclusive_group(required=True)
    chain.add_argument("--network", help="a built-in network (mainnet, dev)")
    chain.add_argument("--genesis", type=Path, help="a geth-style genesis.json")
    headers.add_argument("--network-id", type=int, help="default: the genesis chainId")
    headers.set_defaults(handler=lambda args: _run(args, _eth_headers))

    download = eth_commands.add_parser(
        "download", help="download headers then bodies, report the rates (a measurement)"
    )
    _common(download)
    download.add_argument("--from", dest="start", type=int, default=1, help="first block")
    download.add_argument("--count", type=int, help="blocks (default: up to the peer's head)")
    chain = download.add_mutually_exclusive_group(required=True)
    chain.add_argument("--network", help="a built-in network (mainnet, dev)")
    chain.add_argument("--genesis", type=Path, help="a geth-style genesis.json")
    download.add_argument("--network-id", type=int, help="default: the genesis chainId")
    download.set_defaults(handler=lambda args: _run(args, _eth_download))

    snap = groups.add_parser("snap", help="the snap/1 protocol")
    snap_commands = snap.add_subparsers(dest="snap_command", required=True)
    accounts = snap_commands.add_parser(
        "accounts", help="page through a state's accounts, proofs verified (a measurement)"
    )
    _common(accounts)
    chain = accounts.add_mutually_exclusive_group(required=True)
    chain.add_argument("--network", help="a built-in network (mainnet, dev)")
    chain.add_argument("--genesis", type=Path, help="a geth-style genesis.json")
    accounts.add_argument("--network-id", type=int, help="default: the genesis chainId")
    accounts.add_argument("--root", help="state root (default: the peer's head state)")
    accounts.add_argument("--bytes", type=int, default=512 * 1024, help="response size asked")
    accounts.set_defaults(handler=lambda args: _run(args, _snap_accounts))

    enode = groups.add_parser("enode", help="print our enode URL (creates DATADIR/nodekey)")
    enode.add_argument("--datadir", type=Path, required=True)
    enode.add_argument("--host", default="127.0.0.1")
    enode.add_argument("--port", type=int, default=30303)
    enode.add_argument("--json", action="store_true")
    enode.set_defaults(handler=_print_enode)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("enode", metavar="ENODE", help="enode://<id>@<ip>:<port>")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--datadir", type=Path, help="use DATADIR/nodekey instead of a new key")
    parser.add_argument(
        "--eth",
        type=int,
        action="append",
        choices=(68, 69),
        help="eth version to offer (repeatable; default 69 and 68, the highest shared wins)",
    )


def _run(
    args: argparse.Namespace, job: Callable[[argparse.Namespace], Coroutine[Any, Any, Output]]
) -> int:
    from khipu.p2p.errors import P2PError

    args.eth = sorted(set(args.eth or (69, 68)), reverse=True)
    try:
        result = asyncio.run(asyncio.wait_for(job(args), args.timeout))
    except (P2PError, TimeoutError, OSError) as exc:
        message = str(exc) or type(exc).__name__
        if args.json:
            print(json.dumps({"ok": False, "error": message, "kind": type(exc).__name__}))
        else:
            print(f"error: {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, **result}))
    else:
        for key, value in result.items():
            if isinstance(value, list):
                print(f"{key}:")
                for item in value:
                    print("  " + (json.dumps(item) if isinstance(item, dict) else str(item)))
            else:
                print(f"{key}: {value}")
    return 0


def _key(args: argparse.Namespace) -> Any:
    from coincurve import PrivateKey

    from khipu.p2p.keys import load_or_create_node_key

    return load_or_create_node_key(args.datadir) if args.datadir else PrivateKey()


async def _discv4_ping(args: argparse.Namespace) -> Output:
    from khipu.p2p.discv4.packets import Endpoint
    from khipu.p2p.discv4.service import start_discovery
    from khipu.p2p.errors import P2PError
    from khipu.p2p.keys import Enode

    remote = Enode.parse(args.enode)
    local_host = "127.0.0.1" if remote.ip.startswith("127.") else "0.0.0.0"
    discovery = await start_discovery(_key(args), local_host, 0)
    try:
        endpoint = Endpoint(remote.ip, remote.udp_port, remote.tcp_port)
        started = time.monotonic()
        pong = await discovery.ping(endpoint, remote.node_id)
        result: Output = {
            "node": str(remote),
            "rtt_ms": round((time.monotonic() - started) * 1000, 1),
            "seen_as": f"{pong.recipient.ip}:{pong.recipient.udp_port}",
            "enr_seq": pong.enr_seq,
        }
        if args.enr:  # optional in discv4 (EIP-868): a node without it still answered the ping
            try:
                record = await discovery.request_enr(endpoint, remote.node_id)
            except P2PError as exc:
                result.update(enr=None, enr_error=str(exc))
            else:
                fork_id = record.fork_id
                result.update(enr=record.text(), fork_id=str(fork_id) if fork_id else None)
        return result
    finally:
        discovery.close()


async def _discv4_resolve(args: argparse.Namespace) -> Output:
    """As geth's `devp2p discv4 resolve`: ask the node for its record (EIP-868) where the
    enode says it is; if it does not answer there, look its id up through the boot nodes and
    ask it where the DHT says it is now. Raises P2PError when neither finds it."""
    from khipu.p2p.discv4.packets import Endpoint
    from khipu.p2p.discv4.service import start_discovery
    from khipu.p2p.errors import P2PError
    from khipu.p2p.keys import Enode

    remote = Enode.parse(args.enode)
    bootnodes = [Enode.parse(url) for url in args.bootnodes.split(",") if url.strip()]
    local_host = "127.0.0.1" if remote.ip.startswith("127.") else "0.0.0.0"
    discovery = await start_discovery(_key(args), local_host, 0)
    try:
        endpoints = [Endpoint(remote.ip, remote.udp_port, remote.tcp_port)]
        failures: list[str] = []
        found_by = "direct"
        for attempt in range(2):
            for endpoint in endpoints:
                try:
                    # request_enr bonds first and waits for the node's ping back: a node answers
                    # ENRRequest only from an endpoint that has answered its ping.
                    record = await discovery.request_enr(endpoint, remote.node_id)
                except P2PError as exc:
                    failures.append(f"{endpoint.ip}:{endpoint.udp_port}: {exc}")
                    continue
                return _resolved(record, found_by, endpoint)
            if attempt or not bootnodes:
                break
            found_by = "lookup"
            await discovery.bootstrap(
                [(b.node_id, Endpoint(b.ip, b.udp_port, b.tcp_port)) for b in bootnodes]
            )
            nearest = await discovery.lookup(remote.node_id)
            endpoints = [n.endpoint for n in nearest if n.node_id == remote.node_id]
            if not endpoints:
                failures.append(f"not among the {len(nearest)} nodes nearest its id")
        raise P2PError(f"cannot resolve {remote.node_id.hex()[:16]}: " + "; ".join(failures))
    finally:
        discovery.close()


def _resolved(record: Any, found_by: str, endpoint: Any) -> Output:
    """What `discv4 resolve` prints for the record it found."""
    from khipu.p2p.keys import Enode

    ip = record.ip or endpoint.ip
    tcp = record.port(b"tcp") or endpoint.tcp_port
    udp = record.port(b"udp") or endpoint.udp_port
    fork_id = record.fork_id
    return {
        "node": str(Enode(record.node_id, ip, tcp, udp)),
        "found_by": found_by,
        "seq": record.seq,
        "enr": record.text(),
        "fork_id": str(fork_id) if fork_id else None,
    }


async def _rlpx_ping(args: argparse.Namespace) -> Output:
    from khipu.p2p import session as p2p
    from khipu.p2p.errors import DisconnectReason, PeerDisconnected
    from khipu.p2p.eth.messages import capabilities
    from khipu.p2p.keys import Enode
    from khipu.p2p.snap.messages import MESSAGE_COUNT as SNAP_COUNT
    from khipu.p2p.snap.messages import SNAP1

    remote = Enode.parse(args.enode)
    caps = capabilities(tuple(args.eth)) | {SNAP1: SNAP_COUNT}
    session = await p2p.dial(remote.ip, remote.tcp_port, _key(args), remote.node_id, caps)
    try:
        started = time.monotonic()
        await session.ping()
        while True:  # skip what the peer sends meanwhile (its Status) until the Pong
            message_id, _ = await session.connection.receive(args.timeout)
            if message_id == p2p.PONG:
                break
            if message_id == p2p.DISCONNECT:
                raise PeerDisconnected("peer disconnected before answering the ping")
        hello = session.remote_hello
        return {
            "node": str(remote),
            "client": hello.client_id,
            "p2p_version": hello.version,
            "capabilities": [str(cap) for cap in hello.capabilities],
            "listen_port": hello.listen_port,
            "shared": [f"{c.name}/{c.version}" for c in session.shared],
            "ping_ms": round((time.monotonic() - started) * 1000, 1),
        }
    finally:
        await session.disconnect(DisconnectReason.CLIENT_QUITTING)


async def _connect_eth(args: argparse.Namespace, with_snap: bool = False) -> Any:
    """Dial the peer of `args.enode` (offering snap/1 too if asked), exchange Status for the
    chain of `--genesis`/`--network` and start its message loop; returns (EthPeer, remote
    Status, runner task)."""
    from khipu.chain.config import Genesis
    from khipu.chain.genesis import chain_identity
    from khipu.chain.presets import genesis_json
    from khipu.p2p import session as p2p
    from khipu.p2p.eth import messages as eth
    from khipu.p2p.eth.peer import EthPeer, LocalChain
    from khipu.p2p.keys import Enode

    remote = Enode.parse(args.enode)
    if args.genesis is not None:
        genesis = Genesis.load(args.genesis)
    else:
        genesis = Genesis.from_json(genesis_json(args.network))
    identity = chain_identity(genesis)
    local = LocalChain(
        network_id=args.network_id or identity.chain_id,
        genesis_hash=identity.genesis.hash,
        fork_points=identity.fork_points,
        head_hash=identity.genesis.hash,
        head_number=0,
        head_time=identity.genesis.timestamp,
        total_difficulty=identity.genesis.difficulty,
    )
    caps = eth.capabilities(tuple(args.eth))
    if with_snap:
        from khipu.p2p.snap import messages as snap

        caps[snap.SNAP1] = snap.MESSAGE_COUNT
    session = await p2p.dial(remote.ip, remote.tcp_port, _key(args), remote.node_id, caps)
    peer = EthPeer(session, local)
    status = await peer.exchange_status()
    return peer, status, asyncio.create_task(peer.run())


async def _disconnect(peer: Any, runner: asyncio.Task[Any]) -> None:
    from khipu.p2p.errors import DisconnectReason

    await peer.session.disconnect(DisconnectReason.CLIENT_QUITTING)
    await asyncio.gather(runner, return_exceptions=True)


async def _eth_headers(args: argparse.Namespace) -> Output:
    from khipu.p2p.eth import messages as eth

    peer, status, runner = await _connect_eth(args)
    try:
        headers = await peer.get_block_headers(eth.HeaderRequest(args.start, args.count))
    finally:
        await _disconnect(peer, runner)
    facts = [eth.header_facts(header) for header in headers]
    return {
        "node": args.enode,
        "client": peer.session.remote_hello.client_id,
        "eth_version": peer.version,
        "fork_id": str(status.fork_id),
        "head": "0x" + status.head_hash.hex(),
        "headers": [
            {
                "number": f.number,
                "hash": "0x" + f.block_hash.hex(),
                "parentHash": "0x" + f.parent_hash.hex(),
                "timestamp": f.timestamp,
            }
            for f in facts
        ],
    }


HEADER_BATCH = 192  # geth's MaxHeaderFetch
BODY_BATCH = 128  # geth's MaxBlockFetch


async def _eth_download(args: argparse.Namespace) -> Output:
    """Headers from --from on (batches of 192, checked to link), then their bodies (batches of
    128, checked to be as many as asked for), one request at a time; the rates of each."""
    from khipu.p2p.errors import PeerMisbehaved
    from khipu.p2p.eth import messages as eth

    peer, status, runner = await _connect_eth(args)
    try:
        if args.count is None:
            head = await peer.get_block_headers(eth.HeaderRequest(status.head_hash, 1))
            args.count = eth.header_facts(head[0]).number - args.start + 1
        started = time.monotonic()
        headers: list[bytes] = []
        while len(headers) < args.count:
            amount = min(HEADER_BATCH, args.count - len(headers))
            batch = await peer.get_block_headers(
                eth.HeaderRequest(args.start + len(headers), amount)
            )
            if not batch:
                break
            headers += batch
        header_seconds = time.monotonic() - started
        hashes = [eth.header_facts(header).block_hash for header in headers]
        started = time.monotonic()
        body_bytes = body_count = 0
        for offset in range(0, len(hashes), BODY_BATCH):
            wanted = hashes[offset : offset + BODY_BATCH]
            bodies = await peer.get_block_bodies(wanted)
            if len(bodies) != len(wanted):
                raise PeerMisbehaved(f"{len(bodies)} bodies for {len(wanted)} blocks")
            body_count += len(bodies)
            body_bytes += sum(map(len, bodies))
        body_seconds = time.monotonic() - started
    finally:
        await _disconnect(peer, runner)
    return {
        "node": args.enode,
        "client": peer.session.remote_hello.client_id,
        "eth_version": peer.version,
        "headers": len(headers),
        "headers_per_s": round(len(headers) / max(header_seconds, 1e-9), 1),
        "bodies": body_count,
        "bodies_per_s": round(body_count / max(body_seconds, 1e-9), 1),
        "body_mb": round(body_bytes / 1e6, 3),
        "seconds": round(header_seconds + body_seconds, 3),
    }


async def _snap_accounts(args: argparse.Namespace) -> Output:
    """Every account of a state from the peer, one GetAccountRange at a time, each range
    proof verified; the rates. Raises PeerMisbehaved (BadProof) for a range that fails."""
    from khipu.p2p import wire
    from khipu.p2p.errors import IncompatiblePeer
    from khipu.p2p.eth import messages as eth
    from khipu.p2p.snap import messages as snap

    peer, status, runner = await _connect_eth(args, with_snap=True)
    try:
        if peer.session.capability("snap") is None:
            raise IncompatiblePeer(f"{args.enode} does not offer snap/1")
        if args.root:
            root = bytes.fromhex(args.root.removeprefix("0x"))
        else:
            head = await peer.get_block_headers(eth.HeaderRequest(status.head_hash, 1))
            root = wire.as_bytes(wire.as_list(wire.decode(head[0]), "header")[3], "root")
        origin, accounts, pages, size, verifying = snap.ZERO_HASH, 0, 0, 0, 0.0
        started = time.monotonic()
        while True:
            page = await peer.get_account_range(root, origin, response_bytes=args.bytes)
            checked = time.monotonic()
            more = snap.verify_account_range(root, origin, page)
            verifying += time.monotonic() - checked
            accounts += len(page.accounts)
            pages += 1
            size += sum(32 + len(body) for _, body in page.accounts) + sum(map(len, page.proof))
            if not more:
                break
            origin = (int.from_bytes(page.accounts[-1][0], "big") + 1).to_bytes(32, "big")
        seconds = time.monotonic() - started
    finally:
        await _disconnect(peer, runner)
    return {
        "node": args.enode,
        "client": peer.session.remote_hello.client_id,
        "root": "0x" + root.hex(),
        "accounts": accounts,
        "pages": pages,
        "mb": round(size / 1e6, 3),
        "accounts_per_s": round(accounts / max(seconds, 1e-9), 1),
        "mb_per_s": round(size / 1e6 / max(seconds, 1e-9), 3),
        "seconds": round(seconds, 3),
        "verify_seconds": round(verifying, 3),  # ours, included in the rates above
    }


def _print_enode(args: argparse.Namespace) -> int:
    from khipu.p2p.keys import Enode, load_or_create_node_key, public_key_bytes

    key = load_or_create_node_key(args.datadir)
    enode = Enode(public_key_bytes(key), args.host, args.port, args.port)
    print(json.dumps({"enode": str(enode)}) if args.json else enode)
    return 0
