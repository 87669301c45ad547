"""The `khipu devp2p` command line: parsing, the enode helper, and errors as exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from coincurve import PrivateKey

from khipu import cli
from khipu.p2p.keys import public_key_bytes


def test_devp2p_commands_are_registered() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["devp2p", "rlpx", "ping", "enode://x@127.0.0.1:1", "--json"])
    assert args.json and callable(args.handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["devp2p", "eth", "headers", "enode://x@127.0.0.1:1", "--from", "1"])


def test_enode_helper_uses_the_datadir_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["devp2p", "enode", "--datadir", str(tmp_path), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["enode"]
    assert cli.main(["devp2p", "enode", "--datadir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["enode"] == first
    node_id = first.removeprefix("enode://").split("@")[0]
    assert len(bytes.fromhex(node_id)) == 64


def test_unreachable_peer_is_exit_code_one(capsys: pytest.CaptureFixture[str]) -> None:
    enode = f"enode://{public_key_bytes(PrivateKey()).hex()}@127.0.0.1:1"
    code = cli.main(["devp2p", "rlpx", "ping", enode, "--json", "--timeout", "3"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and not out["ok"]
    assert out["kind"] == "PeerDisconnected" and "cannot connect" in out["error"]
