"""The p2p base protocol (rlpx.md "p2p Capability"): Hello with capability negotiation,
Disconnect, Ping and Pong, and the routing of capability messages by their id offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from coincurve import PrivateKey

from khipu.p2p import handshake, wire
from khipu.p2p.abc import ByteReader, ByteWriter
from khipu.p2p.errors import (
    DisconnectReason,
    IncompatiblePeer,
    P2PError,
    PeerDisconnected,
    PeerMisbehaved,
)
from khipu.p2p.frames import FrameCodec
from khipu.p2p.keys import public_key_bytes
from khipu.p2p.transport import FramedConnection

P2P_VERSION = 5
SNAPPY_VERSION = 5  # compression is on when both sides announce at least this version
BASE_PROTOCOL_LENGTH = 16  # message ids 0x00..0x0f belong to the p2p protocol itself
HELLO, DISCONNECT, PING, PONG = 0x00, 0x01, 0x02, 0x03
HELLO_TIMEOUT = 5.0
PING_INTERVAL = 15.0  # ping a peer that has been silent this long
PONG_TIMEOUT = 20.0  # and drop it if it stays silent this much longer


@dataclass(frozen=True, order=True)
class Capability:
    """A sub-protocol and version, e.g. eth/68."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class SharedCapability:
    """A capability both sides speak, with the message id range it was given."""

    name: str
    version: int
    offset: int
    length: int


@dataclass(frozen=True)
class Hello:
    """The first message each side sends after the handshake."""

    version: int
    client_id: str
    capabilities: tuple[Capability, ...]
    listen_port: int
    node_id: bytes

    def encode(self) -> bytes:
        caps = [[cap.name.encode(), cap.version] for cap in self.capabilities]
        return bytes(
            wire.encode(
                [self.version, self.client_id.encode(), caps, self.listen_port, self.node_id]
            )
        )

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        """Decode a Hello, ignoring extra list elements (EIP-8); raise PeerMisbehaved if bad."""
        fields = wire.as_list(wire.decode(payload, "Hello", strict=False), "Hello", 5)
        capabilities = []
        for entry in wire.as_list(fields[2], "Hello capabilities"):
            name, version = wire.as_list(entry, "Hello capability", 2)[:2]
            try:
                text = wire.as_bytes(name, "capability name").decode("ascii")
            except UnicodeDecodeError as exc:
                raise PeerMisbehaved("capability name is not ASCII") from exc
            capabilities.append(Capability(text, wire.as_int(version, "capability version", 32)))
        client_id = wire.as_bytes(fields[1], "client id").decode("utf-8", errors="replace")
        return cls(
            wire.as_int(fields[0], "p2p version", 32),
            client_id,
            tuple(capabilities),
            wire.as_int(fields[3], "listen port", 16),
            wire.as_bytes(fields[4], "node id", 64),
        )


def negotiate(
    ours: Mapping[Capability, int], theirs: tuple[Capability, ...]
) -> list[SharedCapability]:
    """The shared capabilities: per name the highest version both speak, ordered by name and
    given consecutive message ids after the base protocol's. `ours` maps each capability we
    speak to its number of message ids."""
    remote = set(theirs)
    best: dict[str, Capability] = {}
    for cap in ours:
        if cap in remote and (cap.name not in best or cap.version > best[cap.name].version):
            best[cap.name] = cap
    shared, offset = [], BASE_PROTOCOL_LENGTH
    for name in sorted(best):
        cap = best[name]
        shared.append(SharedCapability(cap.name, cap.version, offset, ours[cap]))
        offset += ours[cap]
    return shared


def encode_disconnect(reason: DisconnectReason) -> bytes:
    """The Disconnect payload `[reason]`."""
    return bytes(wire.encode([int(reason)]))


def decode_disconnect(payload: bytes) -> DisconnectReason | int | None:
    """The reason of a Disconnect; some clients send it bare or not at all."""
    try:
        item = wire.decode(payload, "Disconnect", strict=False) if payload else []
        if isinstance(item, list):
            item = item[0] if item else b""
        return DisconnectReason.parse(wire.as_int(item, "disconnect reason", 8)) if item else None
    except PeerMisbehaved:
        return None


class Session:
    """A live devp2p session: Hello exchanged, capabilities agreed.

    `receive` returns capability messages and handles the base protocol itself: it answers
    Ping, pings a silent peer and raises PeerMisbehaved(PING_TIMEOUT) if it stays silent, and
    raises PeerDisconnected when the peer says goodbye.
    """

    def __init__(
        self,
        connection: FramedConnection,
        local: Hello,
        remote: Hello,
        shared: list[SharedCapability],
    ) -> None:
        self.connection = connection
        self.local_hello = local
        self.remote_hello = remote
        self.shared = shared
        self.remote_id = connection.remote_id
        self.closed = False

    def capability(self, name: str) -> SharedCapability | None:
        """The agreed version and id range of capability `name`, if shared."""
        return next((cap for cap in self.shared if cap.name == name), None)

    async def send(self, name: str, code: int, payload: bytes) -> None:
        """Send message `code` of capability `name`; raise P2PError if it is not shared."""
        cap = self.capability(name)
        if cap is None or code >= cap.length:
            raise P2PError(f"cannot send {name} message 0x{code:02x}: not agreed with the peer")
        await self.connection.send(cap.offset + code, payload)

    async def ping(self) -> None:
        """Send a Ping; the Pong arrives through `receive` and keeps the peer alive."""
        await self.connection.send(PING, bytes(wire.encode([])))

    async def receive(self) -> tuple[str, int, bytes]:
        """The next capability message as (capability name, code within it, payload)."""
        pinged = False
        while True:
            timeout = PONG_TIMEOUT if pinged else PING_INTERVAL
            try:
                message_id, payload = await self.connection.receive(timeout)
            except TimeoutError:
                if pinged:
                    raise PeerMisbehaved(
                        f"peer {self.remote_id.hex()[:16]} did not answer a ping",
                        DisconnectReason.PING_TIMEOUT,
                    ) from None
                await self.ping()
                pinged = True
                continue
            pinged = False
            if message_id >= BASE_PROTOCOL_LENGTH:
                return self._route(message_id, payload)
            if message_id == PING:
                await self.connection.send(PONG, bytes(wire.encode([])))
            elif message_id == DISCONNECT:
                reason = decode_disconnect(payload)
                self.close()
                raise PeerDisconnected(
                    f"peer {self.remote_id.hex()[:16]} disconnected: {_reason_name(reason)}", reason
                )
            elif message_id == HELLO:
                raise PeerMisbehaved("second Hello")
            # PONG and unassigned base ids carry nothing we act on

    def _route(self, message_id: int, payload: bytes) -> tuple[str, int, bytes]:
        for cap in self.shared:
            if cap.offset <= message_id < cap.offset + cap.length:
                return cap.name, message_id - cap.offset, payload
        raise PeerMisbehaved(f"message id 0x{message_id:02x} belongs to no agreed capability")

    async def disconnect(self, reason: DisconnectReason) -> None:
        """Tell the peer why we leave, then close; never raises."""
        if self.closed:
            return
        try:
            self.connection.send_nowait(DISCONNECT, encode_disconnect(reason))
            await asyncio.wait_for(self.connection.drain(), 1.0)
        except Exception:  # the peer may be gone already; closing is all that is left
            self.close()
            return
        self.closed = True
        await self.connection.close_after_peer()

    def close(self) -> None:
        """Close the connection without a Disconnect message."""
        self.closed = True
        self.connection.close()


def _reason_name(reason: DisconnectReason | int | None) -> str:
    if isinstance(reason, DisconnectReason):
        return reason.name.lower()
    return "no reason given" if reason is None else f"unknown reason {reason}"


async def start_session(
    connection: FramedConnection,
    private_key: PrivateKey,
    capabilities: Mapping[Capability, int],
    client_id: str = "khipu",
    listen_port: int = 0,
    timeout: float = HELLO_TIMEOUT,
) -> Session:
    """Exchange Hello on a fresh connection and agree on capabilities.

    Raises PeerDisconnected if the peer hangs up or sends Disconnect instead, and IncompatiblePeer
    (after telling the peer why) if its identity or capabilities do not fit.
    """
    local = Hello(
        P2P_VERSION, client_id, tuple(capabilities), listen_port, public_key_bytes(private_key)
    )
    await connection.send(HELLO, local.encode())
    try:
        message_id, payload = await connection.receive(timeout)
    except TimeoutError:
        connection.close()
        raise PeerDisconnected(
            f"no Hello from {connection.remote_id.hex()[:16]} in {timeout}s"
        ) from None
    except PeerMisbehaved:
        connection.close()
        raise
    if message_id == DISCONNECT:
        connection.close()
        reason = decode_disconnect(payload)
        raise PeerDisconnected(f"peer refused us: {_reason_name(reason)}", reason)
    session = Session(connection, local, local, [])
    if message_id == HELLO:
        try:
            session.remote_hello = Hello.decode(payload)
        except PeerMisbehaved as exc:
            await session.disconnect(exc.reason)
            raise
    else:
        await _refuse(
            session,
            f"expected Hello, got message 0x{message_id:02x}",
            DisconnectReason.BREACH_OF_PROTOCOL,
        )
    remote = session.remote_hello
    connection.compression = remote.version >= SNAPPY_VERSION  # from the next message on
    if remote.node_id == local.node_id:
        await _refuse(session, "connected to ourselves", DisconnectReason.CONNECTED_TO_SELF)
    if remote.node_id != connection.remote_id:
        await _refuse(
            session,
            "Hello node id differs from the handshake's",
            DisconnectReason.UNEXPECTED_IDENTITY,
        )
    if remote.version < 4:
        await _refuse(
            session, f"p2p version {remote.version}", DisconnectReason.INCOMPATIBLE_P2P_VERSION
        )
    session.shared = negotiate(capabilities, remote.capabilities)
    if not session.shared:
        offered = ", ".join(map(str, remote.capabilities)) or "nothing"
        await _refuse(
            session, f"no shared capability (peer offers {offered})", DisconnectReason.USELESS_PEER
        )
    return session


async def _refuse(session: Session, why: str, reason: DisconnectReason) -> None:
    await session.disconnect(reason)
    raise IncompatiblePeer(f"peer {session.remote_id.hex()[:16]}: {why}", reason)


async def dial(
    host: str,
    port: int,
    private_key: PrivateKey,
    remote_id: bytes,
    capabilities: Mapping[Capability, int],
    client_id: str = "khipu",
    listen_port: int = 0,
    timeout: float = handshake.HANDSHAKE_TIMEOUT,
) -> Session:
    """Open a TCP connection, run the initiator handshake and Hello; return the session.

    Raises PeerDisconnected if the connection fails, HandshakeError / IncompatiblePeer as the
    steps above do.
    """
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        raise PeerDisconnected(f"cannot connect to {host}:{port}: {exc}") from exc
    return await establish(
        reader, writer, private_key, remote_id, capabilities, client_id, listen_port
    )


async def accept(
    reader: ByteReader,
    writer: ByteWriter,
    private_key: PrivateKey,
    capabilities: Mapping[Capability, int],
    client_id: str = "khipu",
    listen_port: int = 0,
) -> Session:
    """Run the recipient handshake and Hello on an inbound stream; return the session."""
    return await establish(reader, writer, private_key, None, capabilities, client_id, listen_port)


async def establish(
    reader: ByteReader,
    writer: ByteWriter,
    private_key: PrivateKey,
    remote_id: bytes | None,
    capabilities: Mapping[Capability, int],
    client_id: str = "khipu",
    listen_port: int = 0,
) -> Session:
    """Handshake (as initiator if `remote_id` is given, else as recipient) and Hello on an open
    stream; on failure the stream is closed and the error raised."""
    try:
        if remote_id is None:
            secrets = await handshake.respond(reader, writer, private_key)
        else:
            secrets = await handshake.initiate(reader, writer, private_key, remote_id)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        writer.close()
        raise PeerDisconnected(f"connection closed during the handshake: {exc}") from exc
    except P2PError:
        writer.close()
        raise
    connection = FramedConnection(reader, writer, FrameCodec(secrets))
    return await start_session(connection, private_key, capabilities, client_id, listen_port)
