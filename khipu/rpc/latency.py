"""Request latency of a running JSON-RPC server: `python -m khipu.rpc.latency --datadir D ...`.

Opens the datadir, starts the server on an ephemeral port, and times sequential keep-alive
requests per method (and a few concurrent clients), printing requests/s and percentiles.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any


def time_requests(url: str, method: str, params: list[Any], count: int) -> list[float]:
    """Seconds taken by each of `count` sequential requests on one keep-alive connection."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(connection.getresponse().read())
        durations.append(time.perf_counter() - started)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
    connection.close()
    return durations


def report(name: str, durations: list[float], wall: float | None = None) -> str:
    ordered = sorted(durations)
    wall = sum(durations) if wall is None else wall
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return (
        f"{name:<40} n={len(durations):<5} {len(durations) / wall:8.0f} req/s  "
        f"p50={p50:6.2f}ms  p99={p99:6.2f}ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datadir", type=Path, required=True)
    parser.add_argument("--genesis", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--address", default="0x7dcd17433742f4c0ca53122ab541d0ba67fc27df")
    args = parser.parse_args(argv)

    from khipu.chain.config import Genesis
    from khipu.chain.rules import ChainRules
    from khipu.rpc.config import RpcConfig
    from khipu.rpc.server import RpcServer
    from khipu.storage.chain_store import ChainStore

    document = json.loads(args.genesis.read_text())
    genesis = Genesis.from_json(document)
    store = ChainStore.open(args.datadir, genesis, document)
    server = RpcServer(store, ChainRules(genesis.config), RpcConfig(port=0))
    server.start()
    head = store.head().block_number
    try:
        n = args.count
        cases: list[tuple[str, str, list[Any], int]] = [
            ("eth_blockNumber", "eth_blockNumber", [], n),
            ("eth_getBalance latest", "eth_getBalance", [args.address, "latest"], n),
            ("eth_getBalance at block 1", "eth_getBalance", [args.address, "0x1"], n),
            ("eth_getBlockByNumber full", "eth_getBlockByNumber", [hex(head), True], n // 4),
            ("eth_getBlockReceipts", "eth_getBlockReceipts", [hex(head)], n // 4),
            (
                "eth_getLogs 10 blocks",
                "eth_getLogs",
                [{"fromBlock": "0x1", "toBlock": "0xa"}],
                n // 10,
            ),
            ("eth_call", "eth_call", [{"to": args.address, "input": "0xff01"}, "latest"], n // 10),
        ]
        for name, method, params, count in cases:
            print(report(name, time_requests(server.url, method, params, count)), flush=True)
        # Concurrency: 4 clients on their own connections, eth_getBalance.
        results: list[list[float]] = [[] for _ in range(4)]
        threads = [
            threading.Thread(
                target=lambda i=i: results[i].extend(
                    time_requests(server.url, "eth_getBalance", [args.address, "latest"], n // 4)
                )
            )
            for i in range(4)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        print(report("eth_getBalance, 4 clients", [d for r in results for d in r], wall))
    finally:
        server.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
