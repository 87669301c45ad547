"""Connected session pairs over the in-memory pipe, for protocol tests without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from coincurve import PrivateKey

from khipu.p2p import session as p2p
from khipu.p2p.keys import public_key_bytes
from khipu.p2p.session import Capability
from tests.unit.p2p.memory import memory_pipe


async def session_pair(
    caps_a: Mapping[Capability, int], caps_b: Mapping[Capability, int]
) -> tuple[p2p.Session, p2p.Session]:
    """Two sessions over an in-memory pipe, A dialling B."""
    key_a, key_b = PrivateKey(), PrivateKey()
    (reader_a, writer_a), (reader_b, writer_b) = memory_pipe()
    return await asyncio.gather(
        p2p.establish(reader_a, writer_a, key_a, public_key_bytes(key_b), caps_a, "a", 0),
        p2p.accept(reader_b, writer_b, key_b, caps_b, client_id="b"),
    )
