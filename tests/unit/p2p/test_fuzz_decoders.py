"""Fuzz every decoder that reads what a peer sends: discv4 packets and records, the RLPx auth and
ack, frames and the message id, Hello/Disconnect, and every eth (68 and 69) and snap message.

Each takes arbitrary bytes, well-formed RLP of the wrong shape, and mutated valid messages; the
promise is a P2PError subclass (what the peer loop turns into a Disconnect or a dropped packet),
never another exception. Hangs show up as the pytest-timeout of the test. `KHIPU_CONFORMANCE=full`
runs many more examples.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable
from typing import Any

import pytest
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from khipu.p2p import ecies, handshake, wire
from khipu.p2p.discv4 import packets as pk
from khipu.p2p.enr import decode_record, make_record
from khipu.p2p.errors import P2PError
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth import serving
from khipu.p2p.eth.peer import LocalChain
from khipu.p2p.eth.receipts import decode_network_receipts, to_network_receipts
from khipu.p2p.frames import FrameCodec
from khipu.p2p.handshake import SessionSecrets
from khipu.p2p.keys import keccak256, public_key_bytes, sign_recoverable
from khipu.p2p.session import Hello, decode_disconnect
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap.trie_node_check import match_trie_nodes
from khipu.p2p.transport import split_message_id
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.receipt_samples import sample_receipts
from tests.unit.p2p.snap_states import random_state

FULL = os.environ.get("KHIPU_CONFORMANCE") == "full"
FUZZ = settings(
    max_examples=2000 if FULL else 60,
    deadline=None,  # the machine is shared: timing says nothing here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=not FULL,  # the default run is reproducible; full explores new inputs
)

KEY = PrivateKey(b"\x11" * 32)
NODE_ID = public_key_bytes(KEY)
REMOTE_KEY = PrivateKey(b"\x22" * 32)
REMOTE_ID = public_key_bytes(REMOTE_KEY)

# -- strategies ---------------------------------------------------------------------------------

rlp_items: st.SearchStrategy[Any] = st.recursive(
    st.binary(max_size=40)
    | st.sampled_from([b"", b"\x00", b"\x01" * 32, b"\xff" * 8, b"\x04" * 64]),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)
rlp_bytes = rlp_items.map(wire.encode)


def _nested(depth: int) -> bytes:
    """An RLP list nested `depth` deep: [[[...[]...]]] (built without recursion)."""
    encoded = b"\xc0"
    for _ in range(depth):
        encoded = wire.encode_raw_list([encoded])
    return encoded


deeply_nested = st.integers(400, 4000).map(_nested)  # found RecursionError in wire.decode


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with a few bytes flipped, cut, inserted or dropped."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 3))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if choice == 0 and data:
            data[position] ^= draw(st.integers(1, 255))
        elif choice == 1:
            data = data[: draw(st.integers(0, len(data)))]
        elif choice == 2:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[position]
    return bytes(data)


def fuzz_input(*valid: bytes) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, arbitrary RLP, and mutations of the given valid encodings."""
    choices = [st.binary(max_size=300), rlp_bytes, deeply_nested]
    choices += [mutated(v) for v in valid]  # type: ignore[call-arg]
    choices += [st.just(v) for v in valid]
    return st.one_of(*choices)


def typed_only(decode: Callable[[bytes], object], data: bytes) -> None:
    """Call `decode`; a P2PError is the expected answer to garbage, anything else a bug."""
    with contextlib.suppress(P2PError):
        decode(data)


# -- discv4 -------------------------------------------------------------------------------------


def _signed(body: bytes) -> bytes:
    signature = sign_recoverable(REMOTE_KEY, keccak256(body))
    return keccak256(signature + body) + signature + body


ENDPOINT = pk.Endpoint("127.0.0.1", 30303, 30303)
VALID_DISCV4 = [
    pk.encode_packet(REMOTE_KEY, message)[0]
    for message in (
        pk.Ping(ENDPOINT, ENDPOINT, 1_900_000_000, 3),
        pk.Pong(ENDPOINT, b"\x01" * 32, 1_900_000_000, 3),
        pk.FindNode(NODE_ID, 1_900_000_000),
        pk.Neighbors((pk.NodeRecord(ENDPOINT, NODE_ID),), 1_900_000_000),
        pk.EnrRequest(1_900_000_000),
        pk.EnrResponse(b"\x02" * 32, make_record(REMOTE_KEY, 1, "127.0.0.1", 1, 1).encode()),
    )
]


@FUZZ
@given(fuzz_input(*VALID_DISCV4))
def test_discv4_packet_decoder_raises_only_invalid_packet(data: bytes) -> None:
    with contextlib.suppress(pk.InvalidPacket):
        pk.decode_packet(data)


@FUZZ
@given(st.integers(0, 8), fuzz_input(*(p[98:] for p in VALID_DISCV4)))
def test_discv4_signed_garbage_is_invalid_packet(packet_type: int, data: bytes) -> None:
    """Hash and signature valid, so the fuzzed data reaches the message decoders."""
    try:
        packet = pk.decode_packet(_signed(bytes([packet_type]) + data))
    except pk.InvalidPacket:
        return
    assert packet.sender_id == REMOTE_ID


@FUZZ
@given(fuzz_input(make_record(REMOTE_KEY, 7, "127.0.0.1", 30303, 30303).encode()))
def test_enr_decoder_raises_only_p2p_errors(data: bytes) -> None:
    typed_only(decode_record, data)


# -- RLPx handshake -----------------------------------------------------------------------------


def _sealed(plaintext: bytes) -> bytes:
    """An EIP-8 message to KEY around `plaintext`: the decoders see it decrypted."""
    size = (len(plaintext) + ecies.OVERHEAD).to_bytes(2, "big")
    return size + ecies.encrypt(NODE_ID, plaintext, shared_mac_data=size)


VALID_AUTH = handshake.make_auth(REMOTE_KEY, NODE_ID, PrivateKey(), b"\x05" * 32, b"")
VALID_ACK = handshake.make_ack(NODE_ID, PrivateKey(), b"\x06" * 32)


@FUZZ
@given(fuzz_input(VALID_AUTH, VALID_ACK))
def test_auth_and_ack_decoders_on_raw_bytes(data: bytes) -> None:
    typed_only(lambda d: handshake.read_auth(KEY, d), data)
    typed_only(lambda d: handshake.read_ack(KEY, d), data)


@FUZZ
@given(st.one_of(rlp_bytes, st.binary(max_size=200)), st.binary(max_size=20))
def test_auth_and_ack_decoders_on_decrypted_garbage(body: bytes, padding: bytes) -> None:
    """Well-encrypted messages whose plaintext is garbage or RLP of the wrong shape."""
    message = _sealed(body + padding)
    typed_only(lambda d: handshake.read_auth(KEY, d), message)
    typed_only(lambda d: handshake.read_ack(KEY, d), message)


@FUZZ
@given(st.binary(min_size=194, max_size=194), st.binary(min_size=97, max_size=97))
def test_legacy_auth_and_ack_with_garbage_plaintext(auth_plain: bytes, ack_plain: bytes) -> None:
    typed_only(lambda d: handshake.read_auth(KEY, d), ecies.encrypt(NODE_ID, auth_plain))
    typed_only(lambda d: handshake.read_ack(KEY, d), ecies.encrypt(NODE_ID, ack_plain))


# -- frames -------------------------------------------------------------------------------------


def _codec_pair() -> tuple[FrameCodec, FrameCodec]:
    aes, mac, seed_a, seed_b = (bytes([n]) * 32 for n in (1, 2, 3, 4))
    sender = FrameCodec(SessionSecrets(NODE_ID, aes, mac, seed_a, seed_b))
    receiver = FrameCodec(SessionSecrets(REMOTE_ID, aes, mac, seed_b, seed_a))
    return sender, receiver


def _decode_frame(receiver: FrameCodec, frame: bytes) -> bytes:
    size = receiver.decode_header(frame[:32])
    body = frame[32 : 32 + FrameCodec.body_length(size)]
    return receiver.decode_body(body, size)


@FUZZ
@given(st.binary(min_size=0, max_size=200), st.data())
def test_frame_decoder_rejects_tampered_frames(frame_data: bytes, data: st.DataObject) -> None:
    sender, receiver = _codec_pair()
    frame = sender.encode(frame_data)
    tampered = data.draw(mutated(frame))  # type: ignore[call-arg]
    try:
        decoded = _decode_frame(receiver, tampered)
    except P2PError:
        return
    assert tampered[: len(frame)] == frame  # only an untouched frame (plus junk after) passes
    assert decoded == frame_data


@FUZZ
@given(st.binary(max_size=120))
def test_frame_decoder_on_raw_bytes(data: bytes) -> None:
    _, receiver = _codec_pair()
    typed_only(lambda d: _decode_frame(receiver, d), data)


@FUZZ
@given(fuzz_input(b"\x10\xc0", b"\x81\x80\xc0", b"\x82\x01\x00"))
def test_message_id_decoder(frame_data: bytes) -> None:
    typed_only(split_message_id, frame_data)


# -- the p2p base protocol ----------------------------------------------------------------------

VALID_HELLO = Hello(5, "khipu", (eth.ETH68, snap.SNAP1), 30303, NODE_ID).encode()


@FUZZ
@given(fuzz_input(VALID_HELLO, b"\xc1\x04", b"\x04"))
def test_hello_and_disconnect_decoders(data: bytes) -> None:
    typed_only(Hello.decode, data)
    decode_disconnect(data)  # never raises: a bad reason is "no reason"


# -- eth ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eth_samples(prague_chain: MemoryChain) -> dict[int, bytes]:
    """A valid message of each eth code, built from the test chain."""
    head = eth.header_facts(prague_chain.head_header())
    local_hashes = [
        eth.header_facts(h).block_hash for h in (prague_chain.headers[n] for n in (1, 2, 3))
    ]
    status = eth.Status(68, 1, 1, head.block_hash, prague_chain.genesis_hash(), _fork_id(head))
    return {
        eth.STATUS: status.encode(),
        eth.GET_BLOCK_HEADERS: eth.encode_request(7, [1, 3, 0, 0]),
        eth.BLOCK_HEADERS: eth.encode_raw_response(
            7, [prague_chain.headers[1], prague_chain.headers[2]]
        ),
        eth.GET_BLOCK_BODIES: eth.encode_request(7, local_hashes),
        eth.BLOCK_BODIES: eth.encode_raw_response(7, [prague_chain.bodies[local_hashes[1]]]),
        eth.GET_RECEIPTS: eth.encode_request(7, local_hashes),
        eth.RECEIPTS: eth.encode_raw_response(7, [wire.encode([[b"\x01", 21000, b"", []]])]),
        eth.NEW_BLOCK_HASHES: wire.encode([[head.block_hash, head.number]]),
        eth.NEW_BLOCK: wire.encode_raw_list(
            [
                wire.encode_raw_list(
                    [prague_chain.headers[1], *_items(prague_chain.bodies[local_hashes[1]])]
                ),
                wire.encode(5),
            ]
        ),
        eth.GET_POOLED_TRANSACTIONS: eth.encode_request(7, local_hashes),
    }


def _items(encoded_list: bytes) -> list[bytes]:
    return eth.encode_items(wire.decode(encoded_list), "body")


def _fork_id(head: eth.HeaderFacts) -> Any:
    from khipu.chain.forkid import ForkId

    return ForkId(b"\x01\x02\x03\x04", head.number)


def _eth_decoders(chain: MemoryChain) -> list[Callable[[bytes], object]]:
    return [
        eth.Status.decode,
        lambda d: eth.HeaderRequest.decode_query(eth.decode_request(d, "q")[1]),
        lambda d: eth.decode_hash_list(eth.decode_request(d, "h")[1], "hashes"),
        lambda d: eth.encode_items(eth.decode_request(d, "r")[1], "items"),
        eth.decode_new_block_hashes,
        eth.decode_new_block,
        eth.header_facts,
        *(
            (lambda d, code=code: serving.answer(chain, code, d))
            for code in (
                eth.GET_BLOCK_HEADERS,
                eth.GET_BLOCK_BODIES,
                eth.GET_RECEIPTS,
                eth.GET_POOLED_TRANSACTIONS,
            )
        ),
    ]


@FUZZ
@given(data=st.data())
def test_eth_decoders_raise_only_p2p_errors(
    data: st.DataObject, eth_samples: dict[int, bytes], prague_chain: MemoryChain
) -> None:
    valid = [*eth_samples.values(), prague_chain.headers[5]]
    payload = data.draw(fuzz_input(*valid))
    for decode in _eth_decoders(prague_chain):
        typed_only(decode, payload)


def test_eth_samples_are_valid(eth_samples: dict[int, bytes], prague_chain: MemoryChain) -> None:
    """The seeds the mutations start from decode: the fuzzers start inside the grammar."""
    assert eth.Status.decode(eth_samples[eth.STATUS]).network_id == 1
    reply = serving.answer(prague_chain, eth.GET_BLOCK_HEADERS, eth_samples[eth.GET_BLOCK_HEADERS])
    assert reply is not None and reply[0] == eth.BLOCK_HEADERS
    _, body = eth.decode_request(reply[1], "BlockHeaders")
    assert [eth.header_facts(h).number for h in eth.encode_items(body, "h")] == [1, 2, 3]
    assert eth.decode_new_block(eth_samples[eth.NEW_BLOCK])[1] == 5


# -- eth/69 -------------------------------------------------------------------------------------


def _eth69_samples(chain: MemoryChain) -> list[bytes]:
    """Valid eth/69 Status, BlockRangeUpdate and Receipts (response) payloads."""
    head = eth.header_facts(chain.head_header())
    status = LocalChain.from_reader(chain).status(69)
    network = to_network_receipts(sample_receipts())
    return [
        status.encode(),
        eth.BlockRange(0, head.number, head.block_hash).encode(),
        eth.encode_raw_response(7, [network, network]),
        network,
    ]


def _eth69_decoders(chain: MemoryChain) -> list[Callable[[bytes], object]]:
    def receipts_response(payload: bytes) -> object:
        _, body = eth.decode_request(payload, "Receipts")
        return [decode_network_receipts(block) for block in wire.as_list(body, "Receipts")]

    return [
        lambda d: eth.Status.decode(d, 69),
        eth.BlockRange.decode,
        receipts_response,
        lambda d: decode_network_receipts(wire.decode(d)),
        to_network_receipts,  # our own stored side: typed errors too, never a crash
        lambda d: serving.answer(chain, eth.GET_RECEIPTS, d, 69),
    ]


TRIE_STATE = random_state(41, 40, (5,))
TRIE_PATHS = [[b""], *[[bytes([0x10 | n])] for n in range(16)]]


@FUZZ
@given(data=st.data())
def test_trie_node_answers_raise_only_bad_proof(data: st.DataObject) -> None:
    """A TrieNodes answer is arbitrary bytes: the check gives places or BadProof, nothing else."""
    root_node = TRIE_STATE.state.nodes[TRIE_STATE.root]
    node = data.draw(fuzz_input(root_node))
    answer = data.draw(st.sampled_from([[node], [root_node, node], [node, root_node]]))
    known = data.draw(st.sampled_from([TRIE_STATE.state.nodes.get, lambda _h: None]))
    typed_only(lambda _: match_trie_nodes(TRIE_STATE.root, TRIE_PATHS, answer, known), node)


@FUZZ
@given(data=st.data())
def test_eth69_decoders_raise_only_p2p_errors(
    data: st.DataObject, prague_chain: MemoryChain
) -> None:
    chain = copy.copy(prague_chain)
    chain.receipts = _receipts_by_hash(prague_chain)
    payload = data.draw(fuzz_input(*_eth69_samples(chain)))
    for decode in _eth69_decoders(chain):
        typed_only(decode, payload)


def _receipts_by_hash(chain: MemoryChain) -> dict[bytes, bytes]:
    return {chain.hashes[n]: sample_receipts() for n in (1, 2, 3)}


def test_eth69_samples_are_valid(prague_chain: MemoryChain) -> None:
    """The eth/69 seeds decode, so the fuzzer starts inside the grammar."""
    status, block_range, response, network = _eth69_samples(prague_chain)
    assert eth.Status.decode(status, 69).block_range == eth.BlockRange.decode(block_range)
    assert len(decode_network_receipts(wire.decode(network))) == 4
    _, body = eth.decode_request(response, "Receipts")
    assert len(wire.as_list(body, "Receipts")) == 2


# -- snap ---------------------------------------------------------------------------------------

ACCOUNT = wire.encode([1, 10**18, b"", b""])
VALID_SNAP = [
    wire.encode([[[b"\x01" * 32, wire.decode(ACCOUNT)]], [b"\xc0"]]),
    wire.encode([[[[b"\x02" * 32, b"\x05"]]], []]),
    wire.encode([[b"\x60\x00", b"\x61"]]),
]


def _snap_decoders() -> list[Callable[[bytes], object]]:
    def fields(data: bytes) -> list[wire.Item]:
        return wire.as_list(wire.decode(data, "snap"), "snap")

    return [
        lambda d: snap.AccountRange.decode(fields(d)),
        lambda d: snap.StorageRanges.decode(fields(d)),
        lambda d: snap.decode_byte_strings(fields(d), "ByteCodes"),
        lambda d: snap.verify_account_range(snap.EMPTY_ROOT, b"\0" * 32, _range(fields(d))),
        lambda d: [snap.full_account(body) for _, body in _range(fields(d)).accounts],
    ]


def _range(fields: list[wire.Item]) -> snap.AccountRange:
    return snap.AccountRange.decode(fields)


@FUZZ
@given(fuzz_input(*VALID_SNAP))
def test_snap_decoders_raise_only_p2p_errors(data: bytes) -> None:
    for decode in _snap_decoders():
        typed_only(decode, data)


# -- the RLP decoder itself ---------------------------------------------------------------------


@FUZZ
@given(fuzz_input(VALID_HELLO, VALID_DISCV4[3][98:], _nested(10)))
def test_rlp_decoder_agrees_with_pyrlp_in_strict_mode(data: bytes) -> None:
    """Ours is a loop (no recursion); on canonical input it must decode exactly as pyrlp."""
    import rlp  # type: ignore[import-untyped]

    try:
        expected: object = rlp.decode(data, strict=True)
    except rlp.DecodingError:
        expected = None
    except RecursionError:
        return  # pyrlp's own limit; ours stops at MAX_NESTING (next test)
    try:
        ours: object = wire.decode(data)
    except P2PError as exc:
        assert expected is None or "nested deeper" in str(exc), data.hex()
        return
    assert ours == expected


def test_rlp_nesting_is_bounded_and_cheap() -> None:
    """A 450 kB message of lists nested 120000 deep used to raise RecursionError after ~1 s."""
    assert wire.decode(_nested(wire.MAX_NESTING)) is not None  # 64 lists around an empty one
    for depth in (wire.MAX_NESTING + 1, 120_000):
        with pytest.raises(P2PError, match="nested deeper"):
            wire.decode(_nested(depth))
    with pytest.raises(P2PError, match="nested deeper"):
        Hello.decode(_nested(120_000))


class _BytesReader:
    """A ByteReader over fixed bytes (IncompleteReadError at the end, as asyncio's)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def readexactly(self, n: int) -> bytes:
        import asyncio

        if len(self.data) < n:
            raise asyncio.IncompleteReadError(self.data, n)
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


class _NullWriter:
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: b"\x10" + b),  # an eth id, then garbage snappy
        rlp_bytes.map(lambda b: b"\x10" + bytes(__import__("cramjam").snappy.compress_raw(b))),
        st.just(b"\x10\xff\xff\xff\xff\x0f"),  # a snappy preamble declaring 4 GiB
    ),
    st.booleans(),
)
def test_framed_connection_receive_on_garbage_messages(frame_data: bytes, compressed: bool) -> None:
    """Authentic frames (right MACs) whose content is garbage: message id, snappy, size."""
    import asyncio

    from khipu.p2p.transport import FramedConnection

    sender, receiver = _codec_pair()
    connection = FramedConnection(_BytesReader(sender.encode(frame_data)), _NullWriter(), receiver)
    connection.compression = compressed
    try:
        message_id, payload = asyncio.run(connection.receive(1.0))
    except P2PError:
        return
    assert len(payload) <= connection.max_message_size
    assert message_id >= 0
