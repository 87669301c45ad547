"""`khipu run`'s devp2p flags (geth's names) become the P2PConfig the node starts with."""

from __future__ import annotations

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
