"""The serving side of eth/68 and eth/69: answers GetBlockHeaders, GetBlockBodies and GetReceipts
from a ChainReader, within the limits go-ethereum applies so that one request cannot hog the node.
An eth/69 peer gets the stored receipts rebuilt without their blooms."""

from __future__ import annotations

from collections.abc import Callable

from khipu.p2p.abc import ChainReader
from khipu.p2p.errors import P2PError, PeerMisbehaved
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.messages import HeaderRequest
from khipu.p2p.eth.receipts import to_network_receipts

MAX_HEADERS_SERVED = 1024
MAX_BODIES_SERVED = 1024
MAX_RECEIPTS_SERVED = 1024
SOFT_RESPONSE_LIMIT = 2 * 1024 * 1024  # stop adding items once a response is this big


def select_headers(chain: ChainReader, request: HeaderRequest) -> list[bytes]:
    """The headers a GetBlockHeaders query asks for, as RLP, canonical chain only.

    The walk starts at the origin, steps `skip + 1` blocks up (or down with `reverse`) and stops
    at the first unknown block, at `amount`, at 1024 headers or past the soft size limit.
    """
    if isinstance(request.origin, bytes):
        first = chain.header_by_hash(request.origin)
        if first is None:
            return []
        number = eth.header_facts(first).number
    else:
        number = request.origin
        found = chain.header_by_number(number)
        if found is None:
            return []
        first = found
    headers, size = [first], len(first)
    step = request.skip + 1
    limit = min(request.amount, MAX_HEADERS_SERVED)
    while len(headers) < limit and size < SOFT_RESPONSE_LIMIT:
        number = number - step if request.reverse else number + step
        if number < 0:
            break
        header = chain.header_by_number(number)
        if header is None:
            break
        headers.append(header)
        size += len(header)
    return headers[:limit]


def select_bodies(chain: ChainReader, hashes: list[bytes]) -> list[bytes]:
    """The bodies of the known blocks among `hashes`, in order, unknown ones left out."""
    return _select(chain.body_by_hash, hashes, MAX_BODIES_SERVED)


class StoredReceiptsInvalid(P2PError):
    """Receipts our own chain holds do not decode as receipts (a corrupt store: our fault, not
    the asking peer's)."""


def select_receipts(chain: ChainReader, hashes: list[bytes], version: int = 68) -> list[bytes]:
    """The receipt lists of the known blocks among `hashes`, in order, unknown ones left out;
    for eth/69 (`version` 69) without blooms. Raises StoredReceiptsInvalid naming the block
    whose stored receipts cannot be rebuilt."""
    if version < 69:
        return _select(chain.receipts_by_hash, hashes, MAX_RECEIPTS_SERVED)

    def network_receipts(block_hash: bytes) -> bytes | None:
        stored = chain.receipts_by_hash(block_hash)
        if stored is None:
            return None
        try:
            return to_network_receipts(stored)
        except PeerMisbehaved as exc:
            raise StoredReceiptsInvalid(f"receipts of block 0x{block_hash.hex()}: {exc}") from None

    return _select(network_receipts, hashes, MAX_RECEIPTS_SERVED)


def _select(lookup: Callable[[bytes], bytes | None], hashes: list[bytes], cap: int) -> list[bytes]:
    found: list[bytes] = []
    size = 0
    for block_hash in hashes[:cap]:
        item = lookup(block_hash)
        if item is None:
            continue
        found.append(item)
        size += len(item)
        if size >= SOFT_RESPONSE_LIMIT:
            break
    return found


def answer(
    chain: ChainReader | None, code: int, payload: bytes, version: int = 68
) -> tuple[int, bytes] | None:
    """The response `(code, payload)` to a request of eth `version`, or None if `code` is no
    request.

    A node without a chain answers every request with an empty list. Raises PeerMisbehaved for
    a malformed request, StoredReceiptsInvalid for receipts of ours that cannot be served.
    """
    if code not in eth.RESPONSE_TO:
        return None
    request_id, body = eth.decode_request(payload, f"eth request 0x{code:02x}")
    items: list[bytes] = []
    if chain is not None:
        if code == eth.GET_BLOCK_HEADERS:
            items = select_headers(chain, HeaderRequest.decode_query(body))
        elif code == eth.GET_BLOCK_BODIES:
            items = select_bodies(chain, eth.decode_hash_list(body, "GetBlockBodies"))
        elif code == eth.GET_RECEIPTS:
            hashes = eth.decode_hash_list(body, "GetReceipts")
            items = select_receipts(chain, hashes, version)
        else:  # GetPooledTransactions: we keep no pool
            eth.decode_hash_list(body, "GetPooledTransactions")
    return eth.RESPONSE_TO[code], eth.encode_raw_response(request_id, items)
