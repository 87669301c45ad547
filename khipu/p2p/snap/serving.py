"""The serving side of snap/1: account ranges, storage ranges, bytecodes and trie nodes from the
node's own state, with range proofs, after go-ethereum's eth/protocols/snap handler.

Which roots are served: any state root whose node the store holds. geth serves the 128 most
recent states from its snapshot; an archive node keeps every state's trie, so every block's
state can be served (the walk reads trie nodes, there is no flat snapshot). A root that is
stored but is not an account trie (a transactions root, say) is found out when its leaves do
not decode as accounts, and answered like an unknown root: empty.

Limits, so that no request can hog the node: `responseBytes` is capped at 2 MiB (geth's soft
response limit); a storage range may run 10% over before it is cut and proven; a range request
reads at most MAX_NODE_LOADS trie nodes and a trie-node request MAX_TRIE_NODE_LOOKUPS; every
request stops adding items after SERVE_TIME_LIMIT seconds; bytecodes are looked up for the
first MAX_CODE_LOOKUPS hashes only. Each answer still holds at least one item when one exists.
"""

from __future__ import annotations

import logging
import time

from khipu.nibbles import Nibbles
from khipu.p2p import wire
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap.abc import StateReader, StateUnavailable
from khipu.p2p.snap.messages import (
    EMPTY_CODE_HASH,
    EMPTY_ROOT,
    ZERO_HASH,
    AccountRange,
    GetAccountRange,
    GetByteCodes,
    GetStorageRanges,
    GetTrieNodes,
    StorageRanges,
)
from khipu.p2p.snap.trie_nodes import requested_path
from khipu.p2p.snap.trie_reader import MalformedTrieNode, MissingTrieNode, TrieReader

log = logging.getLogger("khipu.p2p.snap")

SOFT_RESPONSE_LIMIT = 2 * 1024 * 1024
STATE_LOOKUP_SLACK = 0.1
MAX_CODE_LOOKUPS = 1024
MAX_TRIE_NODE_LOOKUPS = 1024
MAX_NODE_LOADS = 100_000
SERVE_TIME_LIMIT = 2.0
MAX_COMPACT_PATH = 33  # a 64-nibble path plus its flag byte


def _reader(state: StateReader, max_loads: int | None = None) -> TrieReader:
    """A trie reader with one request's load and time limits."""
    loads = MAX_NODE_LOADS if max_loads is None else max_loads
    return TrieReader(state, loads, time.monotonic() + SERVE_TIME_LIMIT)


def slim_account(full_body: bytes) -> tuple[bytes, bytes]:
    """An account leaf of the state trie in snap's slim form, and its storage root.

    Works on the bytes (the storage root and code hash are the fixed last 66 of an account),
    as this runs once per account served. Raises MalformedTrieNode if the leaf is not an
    account `[nonce, balance, root, code]`.
    """
    header = _list_header(full_body)
    if header is None or len(full_body) - header < 68:
        raise MalformedTrieNode("a state leaf that is not an account list")
    if full_body[-66] != 0xA0 or full_body[-33] != 0xA0:
        raise MalformedTrieNode("a state leaf without storage root and code hash")
    nonce_and_balance = full_body[header:-66]
    if not _two_strings(nonce_and_balance):
        raise MalformedTrieNode("a state leaf whose nonce and balance are malformed")
    storage_root, code_hash = full_body[-65:-33], full_body[-32:]
    payload = b"".join(
        (
            nonce_and_balance,
            b"\x80" if storage_root == EMPTY_ROOT else full_body[-66:-33],
            b"\x80" if code_hash == EMPTY_CODE_HASH else full_body[-33:],
        )
    )
    return wire.encode_raw_list([payload]), storage_root


def _list_header(data: bytes) -> int | None:
    """The size of the list header of `data` if `data` is exactly one RLP list, else None."""
    if not data or data[0] < 0xC0:
        return None
    if data[0] <= 0xF7:
        header, length = 1, data[0] - 0xC0
    else:
        header = 1 + data[0] - 0xF7
        length = int.from_bytes(data[1:header], "big")
    return header if header + length == len(data) else None


def _two_strings(data: bytes) -> bool:
    """True if `data` is exactly two short RLP strings (an account's nonce and balance)."""
    position = 0
    for _ in range(2):
        if position >= len(data):
            return False
        first = data[position]
        if first < 0x80:
            position += 1
        elif first <= 0xB7:
            position += 1 + first - 0x80
        else:
            return False  # no nonce or balance needs a long string
    return position == len(data)


def _proof(tries: TrieReader, root: bytes, origin: bytes, last: bytes | None) -> tuple[bytes, ...]:
    """The edge proofs of a range: the origin's path and the last key's, each node once."""
    nodes = dict.fromkeys(tries.prove(root, origin))
    if last is not None:
        nodes.update(dict.fromkeys(tries.prove(root, last)))
    return tuple(nodes)


def account_range(state: StateReader, query: GetAccountRange) -> AccountRange:
    """The accounts of `query.root` from its origin, as go-ethereum serves them: in hash order,
    the first one at or past the limit included, stopping once the bodies pass the byte
    budget; with the proofs of the origin and of the last account, left out only when the
    answer is the whole state (origin zero, nothing cut off). Unknown root: empty.

    Raises MissingTrieNode or MalformedTrieNode (see `answer`), StateUnavailable.
    """
    tries = _reader(state)
    if not tries.has_root(query.root):
        return AccountRange((), ())
    budget = min(query.response_bytes, SOFT_RESPONSE_LIMIT)
    accounts: list[tuple[bytes, bytes]] = []
    size, complete = 0, True
    for account_hash, body in tries.leaves(query.root, query.origin):
        slim, _ = slim_account(body)
        accounts.append((account_hash, slim))
        size += 32 + len(slim)
        if account_hash >= query.limit or size > budget or tries.exhausted:
            complete = False
            break
    if complete and query.origin == ZERO_HASH:
        return AccountRange(tuple(accounts), ())
    last = accounts[-1][0] if accounts else None
    return AccountRange(tuple(accounts), _proof(tries, query.root, query.origin, last))


def storage_ranges(state: StateReader, query: GetStorageRanges) -> StorageRanges:
    """The storage slots of the requested accounts, whole ranges until the byte budget is
    used; the last range may be cut (at the limit, the budget plus slack, or the load and
    time limits) and then carries the only proof, as it does when it starts past zero.
    Unknown root or any unknown account: empty (the spec's rule).

    Raises MissingTrieNode or MalformedTrieNode (see `answer`), StateUnavailable.
    """
    empty = StorageRanges((), ())
    tries = _reader(state)
    if not tries.has_root(query.root):
        return empty
    budget = min(query.response_bytes, SOFT_RESPONSE_LIMIT)
    hard_limit = int(budget * (1 + STATE_LOOKUP_SLACK))
    ranges: list[tuple[tuple[bytes, bytes], ...]] = []
    size, served = 0, 0
    for position, account_hash in enumerate(query.accounts):
        if ranges and (tries.exhausted or size >= budget):
            break  # the first account is always served, so that every answer makes progress
        body = tries.get(query.root, account_hash)
        if body is None:
            return empty
        _, storage_root = slim_account(body)
        first = position == 0
        origin = query.origin if first else ZERO_HASH
        limit = query.limit if first else snap.MAX_HASH
        slots: list[tuple[bytes, bytes]] = []
        complete = True
        if storage_root != EMPTY_ROOT:
            for slot_hash, value in tries.leaves(storage_root, origin):
                if served and (size >= hard_limit or tries.exhausted):
                    complete = False
                    break
                slots.append((slot_hash, value))
                size += 32 + len(value)
                served += 1
                if slot_hash >= limit:
                    complete = False
                    break
        if not complete and not slots:
            break  # nothing of this account fits: leave it to the next request
        ranges.append(tuple(slots))
        if storage_root != EMPTY_ROOT and (origin != ZERO_HASH or not complete):
            last = slots[-1][0] if slots else None
            return StorageRanges(tuple(ranges), _proof(tries, storage_root, origin, last))
    return StorageRanges(tuple(ranges), ())


def byte_codes(state: StateReader, query: GetByteCodes) -> list[bytes]:
    """The known codes among the first MAX_CODE_LOOKUPS hashes, in request order, unknown ones
    skipped, until the byte budget is passed. Raises StateUnavailable."""
    budget = min(query.response_bytes, SOFT_RESPONSE_LIMIT)
    codes: list[bytes] = []
    size = 0
    for code_hash in query.hashes[:MAX_CODE_LOOKUPS]:
        if code_hash == EMPTY_CODE_HASH:
            codes.append(b"")
            continue
        code = state.code(code_hash) if len(code_hash) == 32 else None
        if code:
            codes.append(code)
            size += len(code)
        if size > budget:
            break
    return codes


def _path(compact: bytes) -> Nibbles | None:
    """A requested compact path as nibbles (empty: the root), None if it cannot be one."""
    return None if len(compact) > MAX_COMPACT_PATH else requested_path(compact)


def trie_nodes(state: StateReader, query: GetTrieNodes) -> list[bytes]:
    """The trie nodes at the requested paths, in request order, those not found skipped (as
    go-ethereum does), until the byte budget, MAX_TRIE_NODE_LOOKUPS node reads or the time
    limit is passed. Unknown root: empty.

    Raises MissingTrieNode or MalformedTrieNode (see `answer`), StateUnavailable.
    """
    tries = _reader(state, MAX_TRIE_NODE_LOOKUPS)
    if not tries.has_root(query.root):
        return []
    budget = min(query.response_bytes, SOFT_RESPONSE_LIMIT)
    nodes: list[bytes] = []
    size = 0

    def add(root: bytes, compact: bytes) -> bool:
        """Look one path up; True once the answer is full."""
        nonlocal size
        path = _path(compact)
        if path is None:
            tries.loads += 1  # a garbage path costs like a failed lookup
            node = None
        else:
            node = tries.node_at_path(root, path)
        if node is not None:
            nodes.append(node)
            size += len(node)
        return tries.exhausted or (bool(nodes) and size > budget)

    for path_set in query.paths:
        if len(path_set) == 1:
            if add(query.root, path_set[0]):
                break
            continue
        account = tries.get(query.root, path_set[0]) if len(path_set[0]) == 32 else None
        if account is None:
            continue
        _, storage_root = slim_account(account)
        if tries.exhausted or any(add(storage_root, compact) for compact in path_set[1:]):
            break
    return nodes


def answer(state: StateReader | None, code: int, payload: bytes) -> tuple[int, bytes] | None:
    """The response `(code, payload)` to a snap request, or None if `code` is no request.

    Without state, or when the state cannot be read, every request gets an empty answer (the
    spec allows it). A stored trie that is incomplete (a node missing) or not a state trie is
    answered empty too, the former logged as a warning. Raises PeerMisbehaved for a malformed
    request.
    """
    if code not in snap.RESPONSE_TO:
        return None
    fields = wire.as_list(wire.decode(payload, f"snap 0x{code:02x}"), "snap request", 2)
    request_id = wire.as_int(fields[0], "snap request id", 64)
    body = fields[1:]
    response = snap.RESPONSE_TO[code]
    try:
        if code == snap.GET_ACCOUNT_RANGE:
            query = GetAccountRange.decode(body)
            found = account_range(state, query) if state is not None else AccountRange((), ())
            return response, found.encode(request_id)
        if code == snap.GET_STORAGE_RANGES:
            storage = GetStorageRanges.decode(body)
            ranges = storage_ranges(state, storage) if state is not None else StorageRanges((), ())
            return response, ranges.encode(request_id)
        if code == snap.GET_BYTE_CODES:
            codes = byte_codes(state, GetByteCodes.decode(body)) if state is not None else []
            return response, wire.encode([request_id, codes])
        nodes = trie_nodes(state, GetTrieNodes.decode(body)) if state is not None else []
        return response, wire.encode([request_id, nodes])
    except MissingTrieNode as exc:
        log.warning("snap request 0x%02x answered empty: %s", code, exc)
    except (MalformedTrieNode, StateUnavailable) as exc:
        log.debug("snap request 0x%02x answered empty: %s", code, exc)
    empty: list[object] = [[], []] if code <= snap.GET_STORAGE_RANGES else [[]]
    return response, wire.encode([request_id, *empty])
