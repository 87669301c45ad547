"""Requests to a connected peer from any thread (sync, a peer actor), with the answers checked and
the peer's offences reported to the PeerManager, so that every component scores peers alike.

    links = peer_manager.call("active_links")
    requests = PeerRequests(links[0], peer_manager.tell)
    headers = requests.headers(HeaderRequest(1000, 192)).result()
    bodies = requests.bodies(headers).result()      # each checked against its header's roots

    nodes = requests.trie_nodes(state_root, [[b""]], known=store.trie_node).result()

A future fails with the error that ended the request: RequestTimeout (counted SLOW),
PeerMisbehaved or InvalidAnswer (LYING: headers not chained, a body off its roots, a trie node
that is not the one asked for), or the error that closed the connection (not the peer's
offence).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from khipu.p2p.errors import PeerMisbehaved, RequestTimeout
from khipu.p2p.eth.messages import HeaderRequest
from khipu.p2p.keys import keccak256
from khipu.p2p.peers.connection import PeerLink
from khipu.p2p.peers.messages import ReportOffence
from khipu.p2p.peers.scoring import Offence
from khipu.p2p.peers.validation import check_body
from khipu.p2p.snap.trie_node_check import NodeLookup

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


def offence_of_request(error: BaseException) -> Offence | None:
    """How a failed request counts against the peer: a timeout is SLOW, a wrong answer LYING."""
    if isinstance(error, RequestTimeout):
        return Offence.SLOW
    if isinstance(error, PeerMisbehaved):
        return Offence.LYING
    return None


class PeerRequests:
    """Checked eth requests to the peer behind `link`; `report` takes a ReportOffence (e.g. the
    PeerManager handle's `tell`)."""

    def __init__(
        self, link: PeerLink, report: Callable[[Any], None], timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.link = link
        self.report = report
        self.timeout = timeout

    def headers(self, request: HeaderRequest) -> concurrent.futures.Future[list[bytes]]:
        """Headers answering `request`, checked to be the sequence asked for (linked by parent
        hash where adjacent); fewer than asked is allowed."""
        eth = self.link.eth
        future = self.link.submit(lambda: eth.get_block_headers(request, self.timeout))
        return self._scored(future, f"headers from {request.origin!r}")

    def bodies(self, headers: list[bytes]) -> concurrent.futures.Future[list[bytes]]:
        """Bodies of the blocks of `headers` (RLP), in order, each checked against its header's
        transactions root, uncles hash and withdrawals root; the peer may send fewer."""
        eth = self.link.eth
        hashes = [keccak256(header) for header in headers]

        async def fetch() -> list[bytes]:
            bodies = await eth.get_block_bodies(hashes, self.timeout)
            for header, body in zip(headers, bodies, strict=False):
                check_body(header, body)
            return bodies

        return self._scored(self.link.submit(fetch), f"{len(hashes)} bodies")

    def trie_nodes(
        self, root: bytes, paths: list[list[bytes]], known: NodeLookup | None = None
    ) -> concurrent.futures.Future[list[bytes | None]]:
        """Trie nodes of the state `root` by path over snap/1, one entry per requested node
        (None where the peer had none), each checked against the hash its parent references
        (see EthPeer.get_trie_nodes); a node that is not the one asked for counts as LYING.
        The future fails with UnverifiablePath, before anything is sent, for a path that could
        not be checked from `known`."""
        eth = self.link.eth
        future = self.link.submit(lambda: eth.get_trie_nodes(root, paths, known))
        return self._scored(future, f"trie nodes of 0x{root.hex()[:16]}")

    def _scored(
        self, future: concurrent.futures.Future[T], what: str
    ) -> concurrent.futures.Future[T]:
        def done(finished: concurrent.futures.Future[T]) -> None:
            if finished.cancelled():
                return
            error = finished.exception()
            offence = offence_of_request(error) if error is not None else None
            if offence is None:
                return
            # The manager being down (its peers go with it) is no reason to fail the caller.
            with contextlib.suppress(Exception):
                self.report(ReportOffence(self.link.node_id, offence, f"{what}: {error}"))

        future.add_done_callback(done)
        return future
