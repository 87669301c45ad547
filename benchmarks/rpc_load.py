"""JSON-RPC under load: requests/s and latency of a `khipu run` node over a long dev chain.

    python -m benchmarks.rpc_load [--blocks 10000] [--txs 1] [--profile erc20] [--seconds 4]

The chain is generated once into ~/.cache/khipu-bench/<arguments>/chain and imported once into
<...>/datadir (Kesque without fsync: a benchmark cache, not a node's datadir); later runs reuse
both. On this 2-core machine the first run of the default takes ~14 minutes (generation ~7.5,
import ~6); later runs ~3. Then, for each method, random requests (seeded) are timed:

- in-process: the method's handler on the opened store in this process, no HTTP and no JSON
  (eth_getBalance / eth_getStorageAt go straight to py-evm's state at the block);
- over HTTP against `khipu run` in a child process, with 1, 8 and 64 client threads, each
  holding one keep-alive `http.client` connection. A row lasts --seconds plus the requests
  still in flight then (one eth_getLogs over 1000 blocks takes ~0.5 s alone).

Client threads share this process's GIL, and the client and the node share the machine's cores;
the `cpu ms` column shows the CPU this process spent per request, to compare with the node's
time per request (1000 / req/s of the in-process row).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_typing import Address

from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.devnet.contracts import TRANSFER_EVENT, balance_slot
from khipu.devnet.generate import GENERATOR_VERSION, generate_chain, read_manifest
from khipu.devnet.genesis import dev_account
from khipu.devnet.workload import TOKEN_COUNT, token_address
from khipu.rpc.server import RpcServer
from khipu.storage.chain_store import ChainStore
from khipu.storage.kesque import KesqueConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ROOT = Path.home() / ".cache" / "khipu-bench"
BALANCE_OF = bytes.fromhex("70a08231")  # balanceOf(address)
HOLDERS = 64  # dev accounts whose balances are read
LOG_RANGE = 1000
IMPORTED_MARK = "imported.json"

Request = tuple[str, list[Any]]


@dataclass(frozen=True)
class BenchChain:
    """A generated chain imported into a datadir, both cached."""

    genesis_path: Path
    datadir: Path
    head: int


def prepare_chain(blocks: int, txs: int, profile: str, seed: int, cache: Path) -> BenchChain:
    """Generate and import the chain unless the cache already holds it; progress on stderr."""
    key = f"{profile}-b{blocks}-t{txs}-s{seed}-g{GENERATOR_VERSION}"
    folder = cache / key
    chain_dir, datadir = folder / "chain", folder / "datadir"
    arguments = {"blocks": blocks, "txsPerBlock": txs, "profile": profile, "seed": seed}
    manifest = read_manifest(chain_dir)
    if manifest is None or manifest.get("arguments") != arguments:
        print(f"generating {blocks} blocks into {chain_dir}", file=sys.stderr)
        generate_chain(chain_dir, blocks, txs, profile, seed)
    genesis_path = chain_dir / "genesis.json"
    if not (datadir / IMPORTED_MARK).is_file():
        print(f"importing into {datadir}", file=sys.stderr)
        document = json.loads(genesis_path.read_text())
        genesis = Genesis.from_json(document)
        store = ChainStore.open(datadir, genesis, document, config=KesqueConfig(fsync=False))
        try:
            import_files(
                store,
                ChainRules(genesis.config),
                [chain_dir / "chain.rlp"],
                check_seal=False,
                progress=ImportProgress(blocks),
            )
            store.sync()
        finally:
            store.close()
        (datadir / IMPORTED_MARK).write_text(json.dumps(arguments) + "\n")
    return BenchChain(genesis_path, datadir, blocks)


class RequestMix:
    """Random requests of one method at random historical blocks (seeded, so repeatable)."""

    def __init__(self, head: int, seed: int) -> None:
        self.head = head
        self.rng = random.Random(seed)
        self.holders = [dev_account(index).address for index in range(HOLDERS)]
        self.tokens = [token_address(index) for index in range(TOKEN_COUNT)]

    def _block(self) -> int:
        return self.rng.randint(0, self.head)

    def make(self, method: str) -> Request:
        """One request of `method` (eth_getBalance, eth_getStorageAt, eth_getLogs, eth_call)."""
        holder = self.rng.choice(self.holders)
        token = self.rng.choice(self.tokens)
        block = hex(self._block())
        if method == "eth_getBalance":
            return method, [_hex(holder), block]
        if method == "eth_getStorageAt":
            return method, [_hex(token), hex(balance_slot(holder)), block]
        if method == "eth_getLogs":
            first = self.rng.randint(0, max(0, self.head - LOG_RANGE + 1))
            criteria = {
                "fromBlock": hex(first),
                "toBlock": hex(min(self.head, first + LOG_RANGE - 1)),
                "address": _hex(token),
                "topics": [_hex(TRANSFER_EVENT)],
            }
            return method, [criteria]
        if method == "eth_call":
            data = BALANCE_OF + holder.rjust(32, b"\x00")
            return method, [{"to": _hex(token), "data": _hex(data)}, block]
        raise ValueError(f"no request mix for {method}")


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass(frozen=True)
class Timing:
    """Latencies (seconds) of the requests completed in `seconds` of wall clock."""

    latencies: list[float]
    seconds: float
    cpu_seconds: float  # this process's CPU time meanwhile (all threads)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def time_loop(run_one: Callable[[], None], seconds: float, minimum: int) -> Timing:
    """Call `run_one` until `seconds` passed and at least `minimum` calls were made."""
    latencies: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        begin = time.perf_counter()
        run_one()
        end = time.perf_counter()
        latencies.append(end - begin)
        if end - started >= seconds and len(latencies) >= minimum:
            return Timing(latencies, end - started, time.process_time() - cpu)


def measure_in_process(
    server: RpcServer, mix: RequestMix, method: str, seconds: float, minimum: int
) -> Timing:
    """The reads of `method` without RPC: py-evm state reads or the handler, in this process."""
    view = server.context.view

    def header(number_text: str) -> Any:
        found = view.header_by_number(int(number_text, 16))
        assert found is not None, number_text
        return found

    def run_one() -> None:
        name, params = mix.make(method)
        if name == "eth_getBalance":
            holder = Address(_bytes(params[0]))
            view.read_state(header(params[1]), lambda state: state.get_balance(holder))
        elif name == "eth_getStorageAt":
            address, slot = Address(_bytes(params[0])), int(params[1], 16)
            view.read_state(header(params[2]), lambda state: state.get_storage(address, slot))
        else:
            server.dispatcher.call(name, params)

    return time_loop(run_one, seconds, minimum)


def _bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:])


class RpcClient:
    """One keep-alive HTTP/1.1 connection; `call` raises RuntimeError on a JSON-RPC error."""

    def __init__(self, host: str, port: int) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=120)
        self.next_id = 0

    def call(self, method: str, params: list[Any]) -> Any:
        self.next_id += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        )
        self.connection.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(self.connection.getresponse().read())
        if "error" in reply:
            raise RuntimeError(f"{method} {params}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        self.connection.close()


def measure_over_http(
    host: str, port: int, method: str, clients: int, seconds: float, seed: int
) -> Timing:
    """`clients` threads, each with its own connection and request mix, for `seconds`."""
    results: list[list[float]] = [[] for _ in range(clients)]
    failures: list[BaseException] = []
    stop_at = [0.0]

    def set_clock() -> None:  # runs once, before any waiting thread is released
        stop_at[0] = time.perf_counter() + seconds

    start = threading.Barrier(clients + 1, action=set_clock)

    def client(index: int, head: int) -> None:
        rpc = RpcClient(host, port)
        mix = RequestMix(head, seed * 1000 + index)
        try:
            rpc.call("eth_chainId", [])  # connect before the clock starts
            start.wait()
            while time.perf_counter() < stop_at[0]:
                name, params = mix.make(method)
                begin = time.perf_counter()
                rpc.call(name, params)
                results[index].append(time.perf_counter() - begin)
        except BaseException as exc:  # reported after the threads end
            failures.append(exc)
        finally:
            rpc.close()

    head = int(RpcClient(host, port).call("eth_blockNumber", []), 16)
    threads = [threading.Thread(target=client, args=(i, head)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began, cpu = stop_at[0] - seconds, time.process_time()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} client(s) failed: {failures[0]}")
    cpu = time.process_time() - cpu
    return Timing([latency for latencies in results for latency in latencies], elapsed, cpu)


class NodeProcess:
    """`khipu run` over the cached datadir in a child process; `url` once it serves."""

    def __init__(self, chain: BenchChain) -> None:
        command = [
            sys.executable, "-m", "khipu.cli", "run", "--genesis", str(chain.genesis_path),
            "--datadir", str(chain.datadir), "--no-seal-check", "--http.port", "0",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.host, self.port = self._wait_for_url()
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_url(self) -> tuple[str, int]:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            match = re.search(r'msg="json-rpc serving" url=http://([\d.]+):(\d+)/', line)
            if match:
                return match.group(1), int(match.group(2))
        raise RuntimeError(f"khipu run exited with {self.process.wait()} before serving")

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for _ in self.process.stderr:
            pass

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        self.process.terminate()
        return self.process.wait(60)


METHODS = ("eth_getBalance", "eth_getStorageAt", "eth_getLogs", "eth_call")


def _row(method: str, how: str, timing: Timing, baseline: Timing) -> str:
    p50, p99 = timing.percentile(0.5) * 1000, timing.percentile(0.99) * 1000
    latency_ratio = statistics.median(timing.latencies) / statistics.median(baseline.latencies)
    rate_ratio = timing.rate / baseline.rate
    return (
        f"{method:<17} {how:<11} {len(timing.latencies):>6} {timing.rate:>9.1f} "
        f"{p50:>9.2f} {p99:>9.2f} {latency_ratio:>8.2f}x {rate_ratio:>8.2f}x "
        f"{timing.cpu_seconds * 1000 / max(1, len(timing.latencies)):>9.2f}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rpc_load", description=__doc__)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--txs", type=int, default=1, help="transactions per block")
    parser.add_argument("--profile", default="erc20", help="transfers, erc20, amm or mixed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0, help="per method and client count")
    parser.add_argument("--clients", default="1,8,64", help="comma-separated client counts")
    parser.add_argument("--cache", type=Path, default=CACHE_ROOT)
    args = parser.parse_args(argv)
    client_counts = [int(count) for count in args.clients.split(",")]

    chain = prepare_chain(args.blocks, args.txs, args.profile, args.seed, args.cache)
    document = json.loads(chain.genesis_path.read_text())
    genesis = Genesis.from_json(document)
    baselines: dict[str, Timing] = {}
    store = ChainStore.open(chain.datadir, genesis, document)
    try:
        server = RpcServer(store, ChainRules(genesis.config), genesis=genesis)
        head = store.head().block_number
        for method in METHODS:
            print(f"in-process {method}", file=sys.stderr)
            mix = RequestMix(head, args.seed)
            baselines[method] = measure_in_process(server, mix, method, args.seconds, 5)
    finally:
        store.close()

    node = NodeProcess(chain)
    rows: list[str] = []
    try:
        for method in METHODS:
            rows.append(_row(method, "in-process", baselines[method], baselines[method]))
            for clients in client_counts:
                print(f"http {method} x{clients}", file=sys.stderr)
                timing = measure_over_http(
                    node.host, node.port, method, clients, args.seconds, args.seed
                )
                rows.append(_row(method, f"http x{clients}", timing, baselines[method]))
    finally:
        code = node.stop()
    out = io.StringIO()
    print(f"chain: {args.profile}, {head} blocks, {args.txs} tx/block; {args.seconds:g} s per row; "
          f"p50 x = p50 / in-process p50, rate x = req/s / in-process req/s;\n"
          f"cpu ms = this process's CPU per request: the reads themselves in-process, the client "
          f"threads' share over http (the node is another process)", file=out)  # fmt: skip
    print(f"{'method':<17} {'how':<11} {'reqs':>6} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} "
          f"{'p50 x':>9} {'rate x':>9} {'cpu ms':>9}", file=out)  # fmt: skip
    for row in rows:
        print(row, file=out)
    print(out.getvalue(), end="")
    if code != 0:
        print(f"khipu run exited with {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
