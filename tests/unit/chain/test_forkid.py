"""Fork ids against EIP-2124's and geth's mainnet vectors."""

from __future__ import annotations

import pytest

from khipu.chain.forkid import ForkId, ForkIdRejected, ForkPoints

MAINNET_GENESIS = bytes.fromhex("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3")
MAINNET = ForkPoints.gather(
    MAINNET_GENESIS,
    [
        1150000,
        1920000,
        2463000,
        2675000,
        2675000,
        4370000,
        7280000,
        7280000,
        9069000,
        9200000,
        12244000,
        12965000,
        13773000,
        15050000,
    ],
    [1681338455, 1710338135, 1746612311],
    genesis_time=0,
)


@pytest.mark.parametrize(
    ("number", "time", "fork_hash", "fork_next"),
    [
        (0, 0, 0xFC64EC04, 1150000),
        (1149999, 0, 0xFC64EC04, 1150000),
        (1150000, 0, 0x97C2C34C, 1920000),
        (1920000, 0, 0x91D1F948, 2463000),
        (2463000, 0, 0x7A64DA13, 2675000),
        (2675000, 0, 0x3EDD5B10, 4370000),
        (4370000, 0, 0xA00BC324, 7280000),
        (7280000, 0, 0x668DB0AF, 9069000),
        (9069000, 0, 0x879D6E30, 9200000),
        (9200000, 0, 0xE029E991, 12244000),
        (12244000, 0, 0x0EB440F6, 12965000),
        (12965000, 0, 0xB715077D, 13773000),
        (13773000, 0, 0x20C327FC, 15050000),
        (15050000, 0, 0xF0AFD0E3, 1681338455),
        (20000000, 1681338455, 0xDCE96C2D, 1710338135),
        (20000000, 1710338135, 0x9F3D2254, 1746612311),
        (20000000, 1746612311, 0xC376CF8B, 0),
    ],
)
def test_mainnet_fork_ids(number: int, time: int, fork_hash: int, fork_next: int) -> None:
    assert MAINNET.fork_id(number, time) == ForkId(fork_hash.to_bytes(4, "big"), fork_next)


def fid(fork_hash: int, fork_next: int) -> ForkId:
    return ForkId(fork_hash.to_bytes(4, "big"), fork_next)


@pytest.mark.parametrize(
    ("head", "remote"),
    [
        (7987396, fid(0x668DB0AF, 0)),  # same fork, remote announces nothing
        (7987396, fid(0x668DB0AF, 9069000)),  # same fork, remote knows the next one
        (7279999, fid(0xA00BC324, 0)),  # same fork before Petersburg, remote unaware
        (7279999, fid(0xA00BC324, 7280000)),  # remote announces the fork we know too
        (7987396, fid(0xA00BC324, 7280000)),  # remote syncing: in our past, next matches
        (7987396, fid(0x3EDD5B10, 4370000)),  # remote further behind, still consistent
        (7279999, fid(0x668DB0AF, 0)),  # remote in our future: we are syncing
    ],
)
def test_compatible_remotes_are_accepted(head: int, remote: ForkId) -> None:
    MAINNET.validate(remote, head, 0)


@pytest.mark.parametrize(
    ("head", "remote"),
    [
        (7987396, fid(0x668DB0AF, 7279999)),  # announces a fork we already passed without it
        (7987396, fid(0xA00BC324, 0)),  # stale: in our past but does not know our next fork
        (7987396, fid(0x5CDDC0E1, 0)),  # another chain (Rinkeby-era checksum)
        (7987396, fid(0xAFEC6B27, 0)),  # random checksum
    ],
)
def test_incompatible_remotes_are_rejected(head: int, remote: ForkId) -> None:
    with pytest.raises(ForkIdRejected):
        MAINNET.validate(remote, head, 0)


@pytest.mark.parametrize(("suite", "head_time"), [("rpc-compat", 540), ("rpc-compat-prague", 450)])
def test_fork_id_equals_the_one_geth_reports_in_eth_config(suite: str, head_time: int) -> None:
    """geth's eth_config answer in the rpc-compat suites names the fork id of its head fork."""
    import json

    from khipu.chain.config import Genesis
    from khipu.chain.genesis import genesis_header
    from khipu.chain.rules import ChainRules
    from tests.conftest import require_testdata

    folder = require_testdata(suite)
    genesis = Genesis.load(folder / "genesis.json")
    rules = ChainRules(genesis.config)
    header = genesis_header(genesis, rules)
    exchange = (folder / "eth_config" / "get-config.io").read_text().splitlines()
    response = json.loads(next(line for line in exchange if line.startswith("<<"))[3:])
    expected = response["result"]["current"]["forkId"]
    fork_id = rules.fork_points(header.hash, genesis.timestamp).fork_id(10**6, head_time)
    assert "0x" + fork_id.fork_hash.hex() == expected
