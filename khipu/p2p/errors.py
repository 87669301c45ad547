"""Typed errors of the devp2p layer, each carrying what a person needs to act on it."""

from __future__ import annotations

from enum import IntEnum


class DisconnectReason(IntEnum):
    """The reasons a p2p Disconnect message can carry (rlpx.md, "Disconnect (0x01)")."""

    DISCONNECT_REQUESTED = 0x00
    TCP_SUBSYSTEM_ERROR = 0x01
    BREACH_OF_PROTOCOL = 0x02
    USELESS_PEER = 0x03
    TOO_MANY_PEERS = 0x04
    ALREADY_CONNECTED = 0x05
    INCOMPATIBLE_P2P_VERSION = 0x06
    NULL_NODE_IDENTITY = 0x07
    CLIENT_QUITTING = 0x08
    UNEXPECTED_IDENTITY = 0x09
    CONNECTED_TO_SELF = 0x0A
    PING_TIMEOUT = 0x0B
    SUBPROTOCOL_SPECIFIC = 0x10

    @classmethod
    def parse(cls, value: int) -> DisconnectReason | int:
        """The named reason, or the bare number when a peer sends one the spec does not list."""
        try:
            return cls(value)
        except ValueError:
            return value


class P2PError(Exception):
    """Base class of every error raised by khipu.p2p."""


class DecryptionError(P2PError):
    """An ECIES message could not be decrypted: bad MAC, bad key or truncated input."""


class HandshakeError(P2PError):
    """The RLPx auth/ack handshake failed; the message names the step and the peer."""


class PeerMisbehaved(P2PError):
    """A connected peer broke the protocol; `reason` is what we tell it when disconnecting."""

    def __init__(
        self, message: str, reason: DisconnectReason = DisconnectReason.BREACH_OF_PROTOCOL
    ):
        super().__init__(message)
        self.reason = reason


class FrameError(PeerMisbehaved):
    """An RLPx frame failed its MAC check, was oversized or malformed."""


class PeerDisconnected(P2PError):
    """The remote side sent Disconnect or closed the connection."""

    def __init__(self, message: str, reason: DisconnectReason | int | None = None):
        super().__init__(message)
        self.reason = reason


class RequestTimeout(P2PError):
    """A request to a peer got no response within its deadline."""


class IncompatiblePeer(P2PError):
    """The peer speaks no capability we share, or its eth Status does not match our chain."""

    def __init__(self, message: str, reason: DisconnectReason = DisconnectReason.USELESS_PEER):
        super().__init__(message)
        self.reason = reason
