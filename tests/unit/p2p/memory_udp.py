"""An in-memory UDP network: datagrams between Discovery instances without sockets."""

from __future__ import annotations

import asyncio

from coincurve import PrivateKey

from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.discv4.service import Discovery


class MemoryNetwork:
    """Delivers each datagram to the protocol bound at its address, on the next loop turn."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, int], Discovery] = {}
        self.down: set[tuple[str, int]] = set()  # addresses whose datagrams are lost

    def add(self, port: int, key: PrivateKey | None = None) -> Discovery:
        address = ("127.0.0.1", port)
        node = Discovery(key or PrivateKey(), Endpoint(*address, port))
        node.connection_made(MemoryTransport(self, address))  # type: ignore[arg-type]
        self.nodes[address] = node
        return node

    def deliver(self, data: bytes, source: tuple[str, int], target: tuple[str, int]) -> None:
        node = self.nodes.get(target)
        if node is not None and target not in self.down and source not in self.down:
            asyncio.get_running_loop().call_soon(node.datagram_received, data, source)


class MemoryTransport:
    def __init__(self, network: MemoryNetwork, address: tuple[str, int]) -> None:
        self.network = network
        self.address = address

    def sendto(self, data: bytes, target: tuple[str, int]) -> None:
        self.network.deliver(data, self.address, target)

    def close(self) -> None:
        self.network.nodes.pop(self.address, None)
