"""Node keys on disk and enode URLs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from khipu.p2p.errors import P2PError
from khipu.p2p.keys import Enode, load_or_create_node_key, public_key_bytes


def test_node_key_is_created_once_and_kept(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    first = load_or_create_node_key(datadir)
    again = load_or_create_node_key(datadir)
    assert first.secret == again.secret
    path = datadir / "nodekey"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == first.secret.hex()


def test_corrupt_node_key_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nodekey").write_text("not hex")
    with pytest.raises(P2PError, match="nodekey"):
        load_or_create_node_key(tmp_path)


def test_enode_round_trip(tmp_path: Path) -> None:
    node_id = public_key_bytes(load_or_create_node_key(tmp_path))
    url = f"enode://{node_id.hex()}@127.0.0.1:30303"
    enode = Enode.parse(url)
    assert (enode.node_id, enode.ip, enode.tcp_port, enode.udp_port) == (
        node_id,
        "127.0.0.1",
        30303,
        30303,
    )
    assert str(enode) == url
    other = Enode.parse(url.replace("30303", "30305") + "?discport=30301")
    assert (other.tcp_port, other.udp_port) == (30305, 30301)
    assert str(other).endswith("?discport=30301")


@pytest.mark.parametrize(
    "url",
    ["http://x@1.2.3.4:1", "enode://abcd@127.0.0.1:30303", "enode://" + "00" * 64 + "@1.2.3.4:1"],
)
def test_bad_enode_urls(url: str) -> None:
    with pytest.raises(P2PError):
        Enode.parse(url)
