"""`khipu import` and `khipu run` reach the same head and state root with `--serial`, `--workers 1`
and `--workers 2` (generated chain, ethtest chain, rpc-compat-prague chain); every block logs its
line; the adaptive choice runs an AMM chain's conflicting blocks serially."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from khipu.cli import main
from khipu.devnet.generate import GeneratedChain, generate_chain
from khipu.execution.block_executor import LocalPool
from tests.chain_helpers import read_blocks
from tests.conftest import conformance_full, require_testdata
from tests.integration.node_helpers import ReferenceChain, make_chain
from tests.integration.test_node_process import NodeProcess, assert_reference_head, run_args


def import_json(
    capsys: pytest.CaptureFixture[str], datadir: Path, genesis: Path, chain: Path, *extra: str
) -> tuple[dict[str, object], str]:
    """Run `khipu import --json` in this process; the summary and stderr."""
    args = ["import", "--datadir", str(datadir), "--genesis", str(genesis), "--no-seal-check"]
    code = main([*args, "--json", *extra, str(chain)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return dict(json.loads(captured.out.strip().splitlines()[-1])), captured.err


ETHTEST_BLOCKS = 20  # blocks 11 (56 txs) and 12 (3 txs) of the ethtest chain run in parallel


def start_now(runner: LocalPool) -> None:
    """LocalPool.start_in_background that returns once the workers are up."""
    runner.pool.start_workers()


def block_lines(stderr: str) -> list[dict[str, str]]:
    """The fields of every 'block executed' line of stderr."""
    return [
        dict(re.findall(r"(\w+)=(\S+)", line))
        for line in stderr.splitlines()
        if 'msg="block executed"' in line
    ]


def modes(stderr: str) -> dict[str, int]:
    """Blocks per execution mode from the 'parallel execution: ...' line of stderr."""
    line = next(line for line in stderr.splitlines() if line.startswith("parallel execution:"))
    return {mode: int(count) for count, mode in re.findall(r"(\d+) ([a-z-]+)", line)}


def serial_and_parallel(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    genesis: Path,
    chain: Path,
    workers: tuple[int, ...] = (2,),
) -> tuple[dict[str, object], dict[str, object], dict[str, int]]:
    """Import serially, then with each worker count (every eligible block in parallel); every
    parallel import must reach the serial head. The last import's summary and modes."""
    serial, serial_err = import_json(capsys, tmp_path / "serial", genesis, chain, "--serial")
    assert "parallel execution" not in serial_err and not block_lines(serial_err)
    for count in workers:
        parallel, parallel_err = import_json(
            capsys, tmp_path / f"workers-{count}", genesis, chain, "--workers", str(count),
            "--no-adaptive",
        )  # fmt: skip
        assert parallel["head"] == serial["head"], count
        assert (parallel["blocks"], parallel["txs"]) == (serial["blocks"], serial["txs"])
        assert len(block_lines(parallel_err)) == parallel["blocks"]
    return serial, parallel, modes(parallel_err)


@pytest.fixture(scope="module")
def mixed_chain(tmp_path_factory: pytest.TempPathFactory) -> GeneratedChain:
    return generate_chain(tmp_path_factory.mktemp("mixed") / "chain", 4, 24, "mixed", 21)


def test_generated_mixed_chain_parallel_equals_serial(
    mixed_chain: GeneratedChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serial, parallel, counts = serial_and_parallel(
        capsys, tmp_path, mixed_chain.genesis_path, mixed_chain.chain_path, workers=(1, 2)
    )
    assert parallel["head"] == serial["head"]
    assert parallel["head"]["hash"] == "0x" + mixed_chain.head_hash.hex()  # type: ignore[index]
    assert (parallel["blocks"], parallel["txs"]) == (serial["blocks"], serial["txs"])
    assert counts.get("parallel", 0) >= 1, counts  # the workers did run blocks
    assert sum(counts.values()) == 4


def test_ethtest_chain_parallel_equals_serial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = require_testdata("ethtest")
    chain = folder / "chain.rlp"
    if not conformance_full():  # the whole chain (600 blocks) takes ~40 s on 2 loaded cores
        chain = tmp_path / "first-40.rlp"
        chain.write_bytes(b"".join(read_blocks(folder / "chain.rlp")[:ETHTEST_BLOCKS]))
    serial, parallel, counts = serial_and_parallel(
        capsys,
        tmp_path,
        folder / "genesis.json",
        chain,
        workers=(1, 2),
    )
    assert parallel["head"] == serial["head"]
    assert parallel["blocks"] == serial["blocks"]
    assert counts.get("parallel", 0) >= 1, counts


def test_rpc_compat_chain_with_pre_byzantium_blocks_parallel_equals_serial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = require_testdata("rpc-compat-prague")
    serial, parallel, counts = serial_and_parallel(
        capsys, tmp_path, folder / "genesis.json", folder / "chain.rlp"
    )
    assert parallel["head"] == serial["head"]
    assert parallel["blocks"] == serial["blocks"] == 45
    # blocks 1..8 are before Byzantium (block 9): they go through speculation and merge too
    assert "serial-only" not in counts and counts.get("parallel", 0) >= 8, counts


def test_parallel_import_of_a_bad_block_fails_like_serial(
    mixed_chain: GeneratedChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import rlp

    blocks = read_blocks(mixed_chain.chain_path)
    block = rlp.decode(blocks[2])
    block[0][3] = b"\x11" * 32  # a wrong state root in the header of block 3
    bad = tmp_path / "bad.rlp"
    bad.write_bytes(b"".join([*blocks[:2], rlp.encode(block)]))
    args = ["import", "--datadir", str(tmp_path / "d"), "--genesis", str(mixed_chain.genesis_path)]
    code = main([*args, "--no-seal-check", "--workers", "2", "--no-adaptive", str(bad)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "invalid block #3" in err and "state root" in err, err
    assert "stored head is #2" in err, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceChain:
    return make_chain(tmp_path_factory.mktemp("run-parallel"), blocks=6, txs_per_block=12, seed=8)


def test_run_with_parallel_execution_reaches_the_reference_head(
    reference: ReferenceChain, tmp_path: Path
) -> None:
    datadir = tmp_path / "datadir"
    node = NodeProcess(run_args(reference, datadir, "--no-p2p", "--workers", "2", "--no-adaptive"))
    node.wait_for(r'msg="import finished"')
    assert node.stop(signal.SIGTERM) == 0, "\n".join(node.lines[-20:])
    stopped = node.matching("parallel execution stopped")
    assert stopped and "parallel" in stopped[0].split("blocks=", 1)[1], "\n".join(node.lines)
    lines = block_lines("\n".join(node.lines))
    assert [int(line["block"]) for line in lines] == list(range(1, reference.blocks + 1))
    assert {line["mode"] for line in lines} == {"parallel"}
    assert_reference_head(reference, datadir)


def test_the_adaptive_choice_runs_a_conflicting_amm_chain_serially(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the executor chooses once parallel blocks showed one chain is this test's subject,
    # so the workers are up before the first block. (Started in the background, as `khipu
    # import` does, they may come up only after these 8 blocks of ~60 ms: all run batched.)
    monkeypatch.setattr(LocalPool, "start_in_background", start_now)
    amm = generate_chain(tmp_path / "amm", 8, 16, "amm", 5)  # swaps, most on one pool
    serial, _ = import_json(
        capsys, tmp_path / "serial", amm.genesis_path, amm.chain_path, "--serial"
    )
    adaptive, err = import_json(
        capsys, tmp_path / "adaptive", amm.genesis_path, amm.chain_path, "--workers", "2"
    )
    assert adaptive["head"] == serial["head"]
    assert adaptive["head"]["hash"] == "0x" + amm.head_hash.hex()  # type: ignore[index]
    lines = block_lines(err)
    assert len(lines) == 8
    parallel = [line for line in lines if line["mode"] == "parallel"]
    # The swaps of one pool are speculated as one chain: they commit as they ran, but that
    # chain holds most of the block (speculation split fewer than 1.8 ways).
    assert all(int(line["largest_share"]) * 1.8 > int(line["txs"]) for line in parallel[:2])
    assert float(parallel[0]["parallel_rate"]) > 0.5
    counts = modes(err)
    # After parallel blocks whose speculation was mostly one chain, in-order batched execution
    # is chosen; parallel comes back only as the periodic probe.
    assert counts.get("batched", 0) >= 6 and counts.get("parallel", 0) <= 2, counts


class UnavailableWorkers:
    """A task runner whose workers never answer (an ExecutionSupervisor gone for good)."""

    def __init__(self) -> None:
        self.calls = 0

    def map(self, tasks: object) -> list[list[object]]:
        from khipu.execution.block_executor import SpeculationUnavailable

        self.calls += 1
        raise SpeculationUnavailable("no worker answers")


def test_blocks_whose_speculation_is_unavailable_run_serially(
    mixed_chain: GeneratedChain, tmp_path: Path
) -> None:
    from khipu.actors.metrics import NodeMetrics
    from khipu.chain.config import Genesis
    from khipu.chain.import_job import import_files
    from khipu.chain.rules import ChainRules
    from khipu.execution.block_executor import ParallelBlockExecutor
    from khipu.storage.chain_store import ChainStore

    document = json.loads(mixed_chain.genesis_path.read_text())
    genesis = Genesis.from_json(document)
    runner, metrics = UnavailableWorkers(), NodeMetrics()
    executors: list[ParallelBlockExecutor] = []

    def executor(chain: object) -> ParallelBlockExecutor:
        made = ParallelBlockExecutor(chain, runner, workers=2, metrics=metrics)  # type: ignore[arg-type]
        executors.append(made)
        return made

    store = ChainStore.open(tmp_path / "d", genesis, document)
    try:
        summary = import_files(
            store, ChainRules(genesis.config), [mixed_chain.chain_path], check_seal=False,
            executor=executor,
        )  # fmt: skip
    finally:
        store.close()
    assert summary.head.hash == mixed_chain.head_hash
    assert runner.calls >= 1
    assert executors[0].modes["serial-fallback"] == runner.calls
    fallback = metrics.registry.get_sample_value(
        "khipu_blocks_executed_total", {"mode": "serial-fallback"}
    )
    assert fallback == runner.calls
