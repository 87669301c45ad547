"""`khipu run`'s devp2p flags (geth's names) become the P2PConfig the node starts with."""

from __future__ import annotations

from pathlib import Path

import pytest

from khipu.cli import build_parser
from khipu.commands.run import p2p_config_from_args
from khipu.p2p.host import DEFAULT_MAX_PEERS, DEFAULT_PORT


def test_defaults_are_geths() -> None:
    config = p2p_config_from_args(build_parser().parse_args(["run"]))
    assert (config.port, config.max_peers, config.discovery) == (
        DEFAULT_PORT,
        DEFAULT_MAX_PEERS,
        True,
    )
    assert config.host == "127.0.0.1" and config.bootnodes == ()
    assert not config.port_chosen  # a busy default port turns devp2p off instead of failing


def test_flags() -> None:
    argv = [
        *("run", "--port", "0", "--nodiscover", "--maxpeers", "3", "--p2p.addr", "127.0.0.2"),
        *("--bootnodes", " enode://a@1.2.3.4:1, ,enode://b@1.2.3.4:2"),
    ]
    config = p2p_config_from_args(build_parser().parse_args(argv))
    assert (config.port, config.port_chosen, config.discovery) == (0, True, False)
    assert (config.max_peers, config.host) == (3, "127.0.0.2")
    assert config.bootnodes == ("enode://a@1.2.3.4:1", "enode://b@1.2.3.4:2")


def test_the_p2p_table_of_a_config_file_and_flags_over_it(tmp_path: Path) -> None:
    from khipu.config import apply_config_file

    enode = "enode://" + "ab" * 64 + "@127.0.0.1:30305"
    path = tmp_path / "node.toml"
    path.write_text(
        "[p2p]\nport = 30399\naddr = '127.0.0.3'\nmaxpeers = 7\nnodiscover = true\n"
        f"bootnodes = ['{enode}']\nstaticnodes = ['{enode}']\nbadpeer_expiry = 60\n"
    )
    args = build_parser().parse_args(["run", "--config", str(path), "--maxpeers", "9"])
    apply_config_file(args)
    config = p2p_config_from_args(args)
    assert (config.port, config.host, config.max_peers, config.discovery) == (
        30399,
        "127.0.0.3",
        9,  # the flag wins over the file
        False,
    )
    assert config.bootnodes == config.staticnodes == (enode,)
    assert config.bad_peer_expiry == 60.0 and config.port_chosen


def test_bad_p2p_values_are_refused() -> None:
    for argv in (["--maxpeers", "-1"], ["--port", "70000"], ["--p2p.badpeer.expiry", "-5"]):
        with pytest.raises(ValueError):
            p2p_config_from_args(build_parser().parse_args(["run", *argv]))
