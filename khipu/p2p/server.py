"""The inbound side of RLPx: a TCP listener that runs the recipient handshake and Hello on each
connection and hands finished sessions to the owner (the PeerManager, a test, the CLI)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from coincurve import PrivateKey

from khipu.p2p.errors import P2PError
from khipu.p2p.session import Capability, Session, accept

log = logging.getLogger(__name__)

SessionHandler = Callable[[Session], Awaitable[None]]
MAX_PENDING_HANDSHAKES = 50  # geth's MaxPendingPeers default


async def listen(
    host: str,
    port: int,
    private_key: PrivateKey,
    capabilities: Mapping[Capability, int],
    on_session: SessionHandler,
    client_id: str = "khipu",
    max_pending: int = MAX_PENDING_HANDSHAKES,
) -> asyncio.Server:
    """Accept RLPx connections on host:port (0 picks a port; see `server.sockets`).

    A connection that fails its handshake or Hello is closed and logged; nothing a remote
    sends can raise out of the listener. At most `max_pending` handshakes run at once: a
    connection beyond them is closed unanswered (silent sockets cannot pile up). `on_session`
    owns the session it is given.
    """
    pending = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pending
        remote = writer.get_extra_info("peername")
        if pending >= max_pending:
            log.debug("inbound connection from %s closed: %d handshakes pending", remote, pending)
            writer.close()
            return
        pending += 1
        try:
            session = await accept(reader, writer, private_key, capabilities, client_id, port)
        except P2PError as exc:
            log.debug("inbound connection from %s failed: %s", remote, exc)
            writer.close()
            return
        except Exception:  # a bug of ours must not take the listener down
            log.exception("inbound connection from %s crashed the handshake", remote)
            writer.close()
            return
        finally:
            pending -= 1
        await on_session(session)

    return await asyncio.start_server(handle, host, port)
