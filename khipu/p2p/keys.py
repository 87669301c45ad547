"""Node keys and identities: secp256k1 key pairs, node ids, the DATADIR/nodekey file, enode URLs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from coincurve import PrivateKey, PublicKey
from Crypto.Hash import keccak

from khipu.p2p.errors import P2PError


def keccak256(data: bytes) -> bytes:
    """The Keccak-256 digest of `data`."""
    return keccak.new(digest_bits=256, data=data).digest()


def public_key_bytes(private_key: PrivateKey) -> bytes:
    """The 64-byte public key (uncompressed point without its 0x04 prefix): the node id."""
    return bytes(private_key.public_key.format(compressed=False)[1:])


def load_public_key(node_id: bytes) -> PublicKey:
    """Parse a 64-byte node id as a secp256k1 point; raise P2PError if it is not one."""
    if len(node_id) != 64:
        raise P2PError(f"a node id is 64 bytes, got {len(node_id)}")
    try:
        return PublicKey(b"\x04" + node_id)
    except ValueError as exc:
        raise P2PError(f"node id {node_id.hex()[:16]}... is not a curve point") from exc


def ecdh_secret(private_key: PrivateKey, node_id: bytes) -> bytes:
    """The x coordinate of private_key * public point: the raw shared secret devp2p uses."""
    point = load_public_key(node_id).multiply(private_key.secret)
    return bytes(point.format(compressed=False)[1:33])


def sign_recoverable(private_key: PrivateKey, digest: bytes) -> bytes:
    """A 65-byte r || s || v signature of a 32-byte digest, v in {0, 1}."""
    return bytes(private_key.sign_recoverable(digest, hasher=None))


def recover_node_id(signature: bytes, digest: bytes) -> bytes:
    """The node id that made `signature` over `digest`; raise P2PError if it is invalid."""
    if len(signature) != 65:
        raise P2PError(f"a recoverable signature is 65 bytes, got {len(signature)}")
    try:
        public = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception as exc:  # coincurve raises ValueError or its own errors on bad input
        raise P2PError(f"cannot recover a key from signature: {exc}") from exc
    return bytes(public.format(compressed=False)[1:])


def load_or_create_node_key(datadir: Path) -> PrivateKey:
    """The node's key from DATADIR/nodekey (64 hex chars), created on first use with mode 0600.

    Raises P2PError if the file exists but does not hold a valid key.
    """
    path = datadir / "nodekey"
    if path.exists():
        text = path.read_text().strip()
        try:
            return PrivateKey(bytes.fromhex(text))
        except ValueError as exc:
            raise P2PError(f"{path} does not hold a 32-byte hex secp256k1 key") from exc
    datadir.mkdir(parents=True, exist_ok=True)
    key = PrivateKey()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.secret.hex())
    return key


@dataclass(frozen=True)
class Enode:
    """A node's address as an enode URL says it: id, IP, TCP port and UDP (discovery) port."""

    node_id: bytes
    ip: str
    tcp_port: int
    udp_port: int

    @classmethod
    def parse(cls, url: str) -> Enode:
        """Parse `enode://<128 hex>@ip:port[?discport=N]`; raise P2PError if malformed."""
        parsed = urlparse(url)
        if parsed.scheme != "enode" or not parsed.username or not parsed.hostname:
            raise P2PError(f"not an enode URL: {url!r}")
        try:
            node_id = bytes.fromhex(parsed.username)
            port = parsed.port or 30303
        except ValueError as exc:
            raise P2PError(f"malformed enode URL {url!r}: {exc}") from exc
        load_public_key(node_id)
        discport = parse_qs(parsed.query).get("discport")
        udp_port = int(discport[0]) if discport else port
        return cls(node_id, parsed.hostname, port, udp_port)

    def __str__(self) -> str:
        query = "" if self.udp_port == self.tcp_port else f"?discport={self.udp_port}"
        return f"enode://{self.node_id.hex()}@{self.ip}:{self.tcp_port}{query}"
