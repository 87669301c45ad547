"""The RLPx frame codec (rlpx.md "Framing"): AES-256-CTR encryption of header and body, and the
keccak-based egress/ingress MACs that authenticate both.

One message per frame: the header holds the 24-bit frame size and the (unused) header data
`[capability-id, context-id]`, both padded to 16 bytes.
"""

from __future__ import annotations

from typing import Any

from Crypto.Cipher import AES
from Crypto.Hash import keccak
from Crypto.Util import Counter

from khipu.p2p.errors import FrameError
from khipu.p2p.handshake import SessionSecrets

HEADER_LENGTH = 16
MAC_LENGTH = 16
MAX_FRAME_SIZE = 2**24 - 1  # the 24-bit size field
_HEADER_DATA = bytes.fromhex("c28080")  # rlp([0, 0])


def _pad16(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 16)


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


class _MacState:
    """A running keccak-256 state plus the AES-ECB cipher that derives each MAC from it."""

    def __init__(self, mac_secret: bytes, seed: bytes) -> None:
        self._hash: Any = keccak.new(digest_bits=256, update_after_digest=True)
        self._hash.update(seed)
        self._cipher: Any = AES.new(mac_secret, AES.MODE_ECB)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return bytes(self._hash.digest())

    def header_mac(self, header_ciphertext: bytes) -> bytes:
        seed = _xor(self._cipher.encrypt(self.digest()[:16]), header_ciphertext)
        self._hash.update(seed)
        return self.digest()[:MAC_LENGTH]

    def frame_mac(self, frame_ciphertext: bytes) -> bytes:
        self._hash.update(frame_ciphertext)
        previous = self.digest()[:16]
        self._hash.update(_xor(self._cipher.encrypt(previous), previous))
        return self.digest()[:MAC_LENGTH]


def _ctr(key: bytes) -> Any:
    return AES.new(key, AES.MODE_CTR, counter=Counter.new(128, initial_value=0))


class FrameCodec:
    """Encrypts outgoing frames and authenticates and decrypts incoming ones, in stream order."""

    def __init__(self, secrets: SessionSecrets) -> None:
        self.remote_id = secrets.remote_id
        self._egress_cipher = _ctr(secrets.aes_secret)
        self._ingress_cipher = _ctr(secrets.aes_secret)
        self._egress_mac = _MacState(secrets.mac_secret, secrets.egress_mac_seed)
        self._ingress_mac = _MacState(secrets.mac_secret, secrets.ingress_mac_seed)

    @property
    def ingress_mac_digest(self) -> bytes:
        """The current ingress MAC state digest (for test vectors)."""
        return self._ingress_mac.digest()

    def ingress_mac_update(self, data: bytes) -> None:
        """Feed bytes into the ingress MAC state (for test vectors)."""
        self._ingress_mac.update(data)

    def encode(self, frame_data: bytes) -> bytes:
        """One wire frame holding `frame_data`; raise FrameError if it exceeds the 24-bit size."""
        size = len(frame_data)
        if size > MAX_FRAME_SIZE:
            raise FrameError(f"frame of {size} B exceeds the RLPx limit of {MAX_FRAME_SIZE} B")
        header = _pad16(size.to_bytes(3, "big") + _HEADER_DATA)
        header_ciphertext = self._egress_cipher.encrypt(header)
        header_mac = self._egress_mac.header_mac(header_ciphertext)
        body_ciphertext = self._egress_cipher.encrypt(_pad16(frame_data))
        body_mac = self._egress_mac.frame_mac(body_ciphertext)
        return bytes(header_ciphertext + header_mac + body_ciphertext + body_mac)

    def decode_header(self, header: bytes, max_size: int = MAX_FRAME_SIZE) -> int:
        """Check and decrypt a 32-byte frame header; return the frame's data size.

        Raises FrameError on a MAC mismatch or a size above `max_size`; after that the stream is
        unusable and the connection must be closed.
        """
        if len(header) != HEADER_LENGTH + MAC_LENGTH:
            raise FrameError(f"frame header must be 32 bytes, got {len(header)}")
        ciphertext, mac = header[:HEADER_LENGTH], header[HEADER_LENGTH:]
        if self._ingress_mac.header_mac(ciphertext) != mac:
            raise FrameError(f"bad frame header MAC from {self.remote_id.hex()[:16]}...")
        plain = self._ingress_cipher.decrypt(ciphertext)
        size = int.from_bytes(plain[:3], "big")
        if size > max_size:
            raise FrameError(f"frame of {size} B from {self.remote_id.hex()[:16]}... is too big")
        return size

    @staticmethod
    def body_length(size: int) -> int:
        """How many bytes follow the header for a frame of `size` data bytes."""
        return size + (-size % 16) + MAC_LENGTH

    def decode_body(self, body: bytes, size: int) -> bytes:
        """Check and decrypt a frame body read after its header; raise FrameError on a bad MAC."""
        ciphertext, mac = body[:-MAC_LENGTH], body[-MAC_LENGTH:]
        if self._ingress_mac.frame_mac(ciphertext) != mac:
            raise FrameError(f"bad frame MAC from {self.remote_id.hex()[:16]}...")
        return bytes(self._ingress_cipher.decrypt(ciphertext))[:size]
