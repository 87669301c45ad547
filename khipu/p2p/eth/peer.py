"""An eth/68 or eth/69 peer: the Status exchange with fork id checks, then a message loop that
serves our chain, matches responses to our requests by id, and hands announcements to the owner.

The class holds no threads and no actor: whoever owns it (a PeerManager actor's asyncio loop, a
CLI command, a test) awaits `run()` in a task and calls the request methods alongside.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from khipu.chain.forkid import ForkIdRejected, ForkPoints
from khipu.p2p import wire
from khipu.p2p.abc import ChainReader
from khipu.p2p.errors import (
    DisconnectReason,
    IncompatiblePeer,
    P2PError,
    PeerDisconnected,
    PeerMisbehaved,
    RequestTimeout,
)
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth import serving
from khipu.p2p.eth.messages import BlockRange, HeaderRequest, Status
from khipu.p2p.eth.receipts import decode_network_receipts, encode_consensus_list
from khipu.p2p.session import Session
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap import serving as snap_serving
from khipu.p2p.snap.abc import StateReader
from khipu.p2p.snap.messages import AccountRange, StorageRanges
from khipu.p2p.snap.trie_node_check import NodeLookup, check_request, match_trie_nodes
from khipu.p2p.snap.trie_nodes import BadProof

STATUS_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class LocalChain:
    """What we announce in Status and validate the peer's Status against."""

    network_id: int
    genesis_hash: bytes
    fork_points: ForkPoints
    head_hash: bytes
    head_number: int
    head_time: int
    total_difficulty: int
    earliest_block: int = 0  # the first block whose body and receipts we serve (eth/69)

    @classmethod
    def from_reader(cls, chain: ChainReader) -> LocalChain:
        """The Status facts of a ChainReader's current head."""
        head = eth.header_facts(chain.head_header())
        return cls(
            chain.network_id(),
            chain.genesis_hash(),
            chain.fork_points(),
            head.block_hash,
            head.number,
            head.timestamp,
            chain.head_total_difficulty(),
        )

    @property
    def block_range(self) -> BlockRange:
        """The full blocks we serve, as eth/69 announces them."""
        return BlockRange(self.earliest_block, self.head_number, self.head_hash)

    def status(self, version: int = 68) -> Status:
        """Our Status in the layout of eth `version`."""
        fork_id = self.fork_points.fork_id(self.head_number, self.head_time)
        if version >= 69:
            return Status(
                version,
                self.network_id,
                None,
                self.head_hash,
                self.genesis_hash,
                fork_id,
                self.block_range,
            )
        return Status(
            version,
            self.network_id,
            self.total_difficulty,
            self.head_hash,
            self.genesis_hash,
            fork_id,
        )


def check_status(local: LocalChain, remote: Status, version: int) -> None:
    """Raise IncompatiblePeer if the peer's Status is for another network, chain or fork."""
    problem = None
    if remote.version != version:
        problem = f"Status version {remote.version}, negotiated {version}"
    elif remote.network_id != local.network_id:
        problem = f"network id {remote.network_id}, ours is {local.network_id}"
    elif remote.genesis_hash != local.genesis_hash:
        problem = f"genesis 0x{remote.genesis_hash.hex()}, ours is 0x{local.genesis_hash.hex()}"
    else:
        try:
            local.fork_points.validate(remote.fork_id, local.head_number, local.head_time)
        except ForkIdRejected as exc:
            problem = f"fork id rejected: {exc}"
    if problem:
        raise IncompatiblePeer(problem, DisconnectReason.SUBPROTOCOL_SPECIFIC)


Announcement = Callable[[int, bytes], None]  # (message code, payload) of NewBlockHashes/NewBlock
# Answers an eth request (code, payload) with (response code, payload); the node's peer actor.
RequestServer = Callable[[int, bytes], Awaitable[tuple[int, bytes] | None]]


class EthPeer:
    """One eth session (eth/68 or eth/69, as Hello agreed) over an established devp2p Session.

    Receipts are handed out in their eth/68 (consensus) form whatever the version: an eth/69
    peer's are rebuilt with their blooms, and ours are served to it without.
    """

    def __init__(
        self,
        session: Session,
        local: LocalChain,
        chain: ChainReader | None = None,
        on_announcement: Announcement | None = None,
        snap_state: StateReader | None = None,
        server: RequestServer | None = None,
    ) -> None:
        """Requests from the peer are answered by `server` when given, else from `chain` here."""
        self.session = session
        self.local = local
        self.chain = chain
        self.snap_state = snap_state  # served over snap/1 if given, else snap gets empty answers
        self.on_announcement = on_announcement
        self.server = server
        self.remote_status: Status | None = None
        self.remote_range: BlockRange | None = None  # eth/69: from Status, then BlockRangeUpdate
        self.on_block_range: Callable[[BlockRange], None] | None = None  # told of each update
        self.ended: P2PError | None = None
        self._pending: dict[int, tuple[str, int, asyncio.Future[wire.Item]]] = {}
        self._request_ids = itertools.count(int.from_bytes(os.urandom(4), "big"))

    @property
    def version(self) -> int:
        """The agreed eth version (0 if the peer speaks no eth)."""
        cap = self.session.capability("eth")
        return cap.version if cap is not None else 0

    @property
    def peer_label(self) -> str:
        return f"peer {self.session.remote_id.hex()[:16]} ({self.session.remote_hello.client_id})"

    async def exchange_status(self, timeout: float = STATUS_TIMEOUT) -> Status:
        """Send our Status, read and check theirs.

        Raises IncompatiblePeer (after sending Disconnect) on a mismatch, PeerMisbehaved for
        any other first message, PeerDisconnected if the peer leaves or stays silent.
        """
        cap = self.session.capability("eth")
        if cap is None:
            raise IncompatiblePeer(f"{self.peer_label} does not speak eth")
        await self.session.send("eth", eth.STATUS, self.local.status(cap.version).encode())
        try:
            name, code, payload = await asyncio.wait_for(self.session.receive(), timeout)
            if (name, code) != ("eth", eth.STATUS):
                raise PeerMisbehaved(f"{self.peer_label} sent {name} 0x{code:02x} before Status")
            status = Status.decode(payload, cap.version)
            check_status(self.local, status, cap.version)
        except TimeoutError:
            await self.session.disconnect(DisconnectReason.DISCONNECT_REQUESTED)
            raise PeerDisconnected(f"{self.peer_label} sent no Status in {timeout}s") from None
        except (PeerMisbehaved, IncompatiblePeer) as exc:
            await self.session.disconnect(exc.reason)
            raise
        self.remote_status = status
        self.remote_range = status.block_range
        return status

    async def send_block_range(self, block_range: BlockRange) -> bool:
        """Announce our served range with BlockRangeUpdate; False (nothing sent) on eth/68."""
        if self.version < 69:
            return False
        await self.session.send("eth", eth.BLOCK_RANGE_UPDATE, block_range.encode())
        return True

    async def run(self) -> P2PError:
        """Serve and dispatch messages until the session ends; return why it ended.

        Never raises for anything the peer does: a protocol breach disconnects it with the
        matching reason, and every pending request fails with the same error.
        """
        try:
            while True:
                name, code, payload = await self.session.receive()
                if name == "eth":
                    await self._handle(code, payload)
                elif name == "snap":
                    await self._handle_snap(code, payload)
        except PeerMisbehaved as exc:
            await self.session.disconnect(exc.reason)
            ended: P2PError = exc
        except P2PError as exc:
            self.session.close()
            ended = exc
        except asyncio.CancelledError:
            await self.session.disconnect(DisconnectReason.CLIENT_QUITTING)
            self._fail_pending(PeerDisconnected("session closed by us"))
            raise
        self._fail_pending(ended)
        self.ended = ended
        return ended

    def _fail_pending(self, error: P2PError) -> None:
        for _, _, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def _handle(self, code: int, payload: bytes) -> None:
        if self.server is not None and code in eth.RESPONSE_TO:
            reply = await self.server(code, payload)
        else:
            reply = serving.answer(self.chain, code, payload, self.version)
        if reply is not None:
            await self.session.send("eth", *reply)
        elif code in (eth.BLOCK_HEADERS, eth.BLOCK_BODIES, eth.RECEIPTS, eth.POOLED_TRANSACTIONS):
            request_id, body = eth.decode_request(payload, f"eth response 0x{code:02x}")
            self._resolve("eth", code, request_id, body)
        elif code == eth.NEW_BLOCK_HASHES:
            eth.decode_new_block_hashes(payload)
            self._announce(code, payload)
        elif code == eth.NEW_BLOCK:
            eth.decode_new_block(payload)
            self._announce(code, payload)
        elif code in (eth.TRANSACTIONS, eth.NEW_POOLED_TRANSACTION_HASHES):
            wire.decode(payload, "transaction announcement")  # well-formed, then ignored
        elif code == eth.BLOCK_RANGE_UPDATE and self.version >= 69:
            self.remote_range = BlockRange.decode(payload)
            if self.on_block_range is not None:
                self.on_block_range(self.remote_range)
        elif code == eth.STATUS:
            raise PeerMisbehaved(f"{self.peer_label} sent a second Status")
        else:
            raise PeerMisbehaved(f"{self.peer_label} sent unknown eth message 0x{code:02x}")

    def _resolve(self, name: str, code: int, request_id: int, body: wire.Item) -> None:
        expected = self._pending.pop(request_id, None)
        if expected is None:
            return  # a late answer to a request that timed out
        expected_name, expected_code, future = expected
        if (name, code) != (expected_name, expected_code):
            raise PeerMisbehaved(f"answered request {request_id} with {name} 0x{code:02x}")
        if not future.done():
            future.set_result(body)

    async def _handle_snap(self, code: int, payload: bytes) -> None:
        if code in snap.RESPONSE_TO:  # walking tries takes a while: off the event loop
            if self.snap_state is None:
                reply = snap_serving.answer(None, code, payload)
            else:
                reply = await asyncio.to_thread(snap_serving.answer, self.snap_state, code, payload)
            assert reply is not None
            await self.session.send("snap", *reply)
            return
        fields = wire.as_list(wire.decode(payload, f"snap 0x{code:02x}"), "snap message", 2)
        request_id = wire.as_int(fields[0], "snap request id", 64)
        if code in snap.RESPONSE_TO.values():
            self._resolve("snap", code, request_id, fields[1:])
        else:
            raise PeerMisbehaved(f"{self.peer_label} sent unknown snap message 0x{code:02x}")

    def _announce(self, code: int, payload: bytes) -> None:
        if self.on_announcement is not None:
            self.on_announcement(code, payload)

    async def request(self, code: int, body: object, timeout: float = REQUEST_TIMEOUT) -> wire.Item:
        """Send eth request `code` and await the body of the matching response.

        Raises RequestTimeout if no answer comes in time, or the error that ended the session.
        """
        return await self._request("eth", code, eth.RESPONSE_TO[code], [body], timeout)

    async def snap_request(
        self, code: int, fields: list[object], timeout: float = REQUEST_TIMEOUT
    ) -> list[wire.Item]:
        """Send snap request `code` with `fields` after the request id; await the response's
        fields after its request id. Raises as `request` does."""
        response = await self._request("snap", code, snap.RESPONSE_TO[code], fields, timeout)
        assert isinstance(response, list)
        return response

    async def _request(
        self, name: str, code: int, response_code: int, fields: list[object], timeout: float
    ) -> wire.Item:
        if self.ended is not None:
            raise self.ended
        request_id = next(self._request_ids) % 2**64
        future: asyncio.Future[wire.Item] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (name, response_code, future)
        try:
            await self.session.send(name, code, wire.encode([request_id, *fields]))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(
                f"{self.peer_label} did not answer {name} request {request_id} (0x{code:02x}) "
                f"in {timeout}s"
            ) from None
        finally:
            self._pending.pop(request_id, None)

    async def get_account_range(
        self,
        root: bytes,
        origin: bytes = b"\0" * 32,
        limit: bytes = b"\xff" * 32,
        response_bytes: int = snap.SOFT_RESPONSE_LIMIT,
    ) -> AccountRange:
        """An AccountRange (unverified: see snap.messages.verify_account_range)."""
        fields = await self.snap_request(
            snap.GET_ACCOUNT_RANGE, [root, origin, limit, response_bytes]
        )
        return AccountRange.decode(fields)

    async def get_storage_ranges(
        self,
        root: bytes,
        account_hashes: list[bytes],
        origin: bytes = b"",
        limit: bytes = b"",
        response_bytes: int = snap.SOFT_RESPONSE_LIMIT,
    ) -> StorageRanges:
        """StorageRanges of the accounts (unverified: see snap.messages.verify_storage_range)."""
        fields = await self.snap_request(
            snap.GET_STORAGE_RANGES, [root, account_hashes, origin, limit, response_bytes]
        )
        return StorageRanges.decode(fields)

    async def get_byte_codes(
        self, code_hashes: list[bytes], response_bytes: int = snap.SOFT_RESPONSE_LIMIT
    ) -> list[bytes]:
        """Contract codes for `code_hashes`, each checked to be one that was asked for, in order.

        Raises PeerMisbehaved (and disconnects) for a code nobody asked for.
        """
        fields = await self.snap_request(snap.GET_BYTE_CODES, [code_hashes, response_bytes])
        codes = snap.decode_byte_strings(fields, "ByteCodes")
        try:
            snap.verify_byte_codes(code_hashes, codes)
        except BadProof as exc:
            error = PeerMisbehaved(f"{self.peer_label}: {exc}")
            await self.session.disconnect(error.reason)
            raise error from exc
        return codes

    async def get_trie_nodes(
        self,
        root: bytes,
        paths: list[list[bytes]],
        known: NodeLookup | None = None,
        response_bytes: int = snap.SOFT_RESPONSE_LIMIT,
    ) -> list[bytes | None]:
        """Trie nodes by path (`[[account path], [account hash, storage path, ...], ...]`), one
        entry per requested node in request order: the node, or None where the peer had none
        (or cut its answer short). Each node is checked against the hash its parent references
        at that path, walking from `root` through the nodes `known` knows (by hash) and the
        nodes of this answer that checked out before it.

        Raises UnverifiablePath before sending if a path could not be checked that way, and
        PeerMisbehaved (after disconnecting) for a node that is not the one asked for.
        """
        lookup: NodeLookup = known if known is not None else _no_nodes
        check_request(root, paths, lookup)
        fields = await self.snap_request(snap.GET_TRIE_NODES, [root, paths, response_bytes])
        nodes = snap.decode_byte_strings(fields, "TrieNodes")
        try:
            return match_trie_nodes(root, paths, nodes, lookup)
        except BadProof as exc:
            error = PeerMisbehaved(f"{self.peer_label}: {exc}")
            await self.session.disconnect(error.reason)
            raise error from exc

    async def get_block_headers(
        self, request: HeaderRequest, timeout: float = REQUEST_TIMEOUT
    ) -> list[bytes]:
        """Headers (RLP) answering `request`, checked to be the sequence that was asked for.

        Raises PeerMisbehaved (and disconnects) if the peer answers with other headers.
        """
        body = await self.request(eth.GET_BLOCK_HEADERS, request.encode_query(), timeout)
        headers = eth.encode_items(body, "BlockHeaders")
        try:
            check_header_sequence(request, headers)
        except PeerMisbehaved as exc:
            await self.session.disconnect(exc.reason)
            raise
        return headers

    async def get_block_bodies(
        self, hashes: list[bytes], timeout: float = REQUEST_TIMEOUT
    ) -> list[bytes]:
        """Bodies (RLP) of the blocks `hashes`, in order; the peer may return fewer."""
        body = await self.request(eth.GET_BLOCK_BODIES, hashes, timeout)
        bodies = eth.encode_items(body, "BlockBodies")
        if len(bodies) > len(hashes):
            raise PeerMisbehaved(f"{self.peer_label} sent {len(bodies)} bodies for {len(hashes)}")
        return bodies

    async def get_receipts(
        self, hashes: list[bytes], timeout: float = REQUEST_TIMEOUT
    ) -> list[bytes]:
        """Receipt lists (RLP, in eth/68's consensus form whatever the version) of the blocks
        `hashes`, in order; the peer may return fewer.

        Raises PeerMisbehaved (and disconnects) for more lists than asked or, from an eth/69
        peer, a list that is not made of eth/69 receipts.
        """
        body = await self.request(eth.GET_RECEIPTS, hashes, timeout)
        try:
            if self.version >= 69:
                receipts = [
                    encode_consensus_list(decode_network_receipts(block, "eth/69 receipts"))
                    for block in wire.as_list(body, "Receipts")
                ]
            else:
                receipts = eth.encode_items(body, "Receipts")
            if len(receipts) > len(hashes):
                raise PeerMisbehaved(f"{self.peer_label} sent {len(receipts)} receipt lists")
        except PeerMisbehaved as exc:
            await self.session.disconnect(exc.reason)
            raise
        return receipts


def check_header_sequence(request: HeaderRequest, headers: list[bytes]) -> None:
    """Raise PeerMisbehaved unless `headers` could answer `request`: not too many, starting at
    the origin, `skip + 1` apart in the requested direction (and linked by parent hash when
    adjacent)."""
    if len(headers) > request.amount:
        raise PeerMisbehaved(f"got {len(headers)} headers for a request of {request.amount}")
    facts = [eth.header_facts(header) for header in headers]
    if not facts:
        return
    first = facts[0]
    if isinstance(request.origin, bytes):
        if first.block_hash != request.origin:
            raise PeerMisbehaved("first header is not the requested origin hash")
    elif first.number != request.origin:
        raise PeerMisbehaved(f"first header is #{first.number}, requested #{request.origin}")
    step = -(request.skip + 1) if request.reverse else request.skip + 1
    for previous, current in itertools.pairwise(facts):
        if current.number != previous.number + step:
            raise PeerMisbehaved(f"header #{current.number} follows #{previous.number}")
        if step == 1 and current.parent_hash != previous.block_hash:
            raise PeerMisbehaved(f"header #{current.number} does not link to its parent")
        if step == -1 and previous.parent_hash != current.block_hash:
            raise PeerMisbehaved(f"header #{previous.number} does not link to its parent")


def _no_nodes(_node_hash: bytes) -> bytes | None:
    """A NodeLookup that knows nothing: only the state root itself can be checked."""
    return None
