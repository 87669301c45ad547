"""What py-evm writes into its database, told apart so each kind lands in the right store.

py-evm keeps one flat key space: trie nodes, contract code, block headers and uncle lists are
all keyed by a 32-byte keccak hash, the chain's indexes by text keys of `eth.db.schema.SchemaV1`.
The key of a 32-byte entry does not say what it is, its value does:

- a header is an RLP list of at least 15 fields opening with two 32-byte hashes and a 20-byte
  coinbase; no trie node has that shape (a branch holds only empty strings, 32-byte hashes or
  embedded lists; a leaf or extension has two items and a path of at most 33 bytes);
- a trie node (and an uncle list) is one well-formed RLP list spanning the whole value;
- anything else is contract code.

Contract code that happens to be a well-formed RLP list is taken for a trie node and lands in
the trie-node topic; reads look in both topics, so this costs placement, never correctness.

Bodies and receipts are the devp2p encodings of one block, rebuilt from the block's tries.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from typing import Any

import rlp
from eth.abc import DatabaseAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_UNCLE_HASH
from rlp.sedes import big_endian_int

from khipu.nibbles import Nibbles, hex_prefix_decode, nibbles_key

SCORE_KEY_PREFIX = b"block-hash-to-score:"
NUMBER_TO_HASH_PREFIX = b"block-number-to-hash:"
CANONICAL_HEAD_KEY = b"v1:canonical_head_hash"
HASH_TO_NUMBER_PREFIX = b"khipu:hash-to-number:"
"""LevelDB key prefix of khipu's block hash -> number map (the number as 8 bytes, big-endian)."""

# A header's RLP: 0xf9 and a two-byte length (headers are 500+ bytes), then
# parent hash (0xa0 + 32 bytes), uncles hash (0xa0 + 32 bytes), coinbase (0x94 + 20 bytes).
_HEADER_MARKS = ((0, 0xF9), (3, 0xA0), (36, 0xA0), (69, 0x94))
_HEADER_FIELDS_MIN = 15
_NUMBER_FIELD = 8


def is_header(value: bytes) -> bool:
    """Whether `value` has the shape of an RLP block header (no trie node has it)."""
    if len(value) < 256:
        return False
    return all(value[position] == mark for position, mark in _HEADER_MARKS) and is_rlp_list(value)


def is_rlp_list(value: bytes) -> bool:
    """Whether `value` is exactly one RLP list (its length prefix covers the whole value)."""
    if not value or value[0] < 0xC0:
        return False
    first = value[0]
    if first <= 0xF7:
        return 1 + first - 0xC0 == len(value)
    width = first - 0xF7
    if len(value) < 1 + width:
        return False
    return 1 + width + int.from_bytes(value[1 : 1 + width], "big") == len(value)


def header_fields(raw_header: bytes) -> list[bytes]:
    """The fields of an RLP header, as bytes. Raises ValueError if it is not a header."""
    try:
        fields = rlp.decode(raw_header)
    except rlp.DecodingError as exc:
        raise ValueError(f"not an RLP header: {exc}") from exc
    if not isinstance(fields, list) or len(fields) < _HEADER_FIELDS_MIN:
        raise ValueError("not an RLP header: too few fields")
    if not all(isinstance(field, bytes) for field in fields):
        raise ValueError("not an RLP header: nested field")
    return fields


def header_number(fields: list[bytes]) -> int:
    """The block number of a decoded header."""
    return int.from_bytes(fields[_NUMBER_FIELD], "big")


def header_parent_hash(raw_header: bytes) -> bytes:
    """The parent hash of an RLP header (checked by `is_header`: it sits at bytes 4..36)."""
    return raw_header[4:36]


def hash_of_score_key(key: bytes) -> bytes | None:
    """The block hash named by py-evm's `block-hash-to-score:b'...'` key, or None."""
    if not key.startswith(SCORE_KEY_PREFIX):
        return None
    try:
        found = ast.literal_eval(key[len(SCORE_KEY_PREFIX) :].decode("ascii"))
    except (ValueError, SyntaxError, UnicodeDecodeError):
        return None
    return found if isinstance(found, bytes) and len(found) == 32 else None


def number_of_number_key(key: bytes) -> int | None:
    """The block number named by py-evm's `block-number-to-hash:N` key, or None."""
    if not key.startswith(NUMBER_TO_HASH_PREFIX):
        return None
    digits = key[len(NUMBER_TO_HASH_PREFIX) :]
    return int(digits) if digits.isdigit() else None


def encode_number(number: int) -> bytes:
    return number.to_bytes(8, "big")


def decode_number(value: bytes) -> int:
    return int.from_bytes(value, "big")


def encode_raw_list(items: Iterable[bytes]) -> bytes:
    """The RLP list whose items are the given already-encoded RLP items."""
    payload = b"".join(items)
    if len(payload) <= 55:
        return bytes([0xC0 + len(payload)]) + payload
    width = (len(payload).bit_length() + 7) // 8
    return bytes([0xF7 + width]) + len(payload).to_bytes(width, "big") + payload


def _as_rlp_item(encoded: bytes) -> bytes:
    """A trie value as a list item: a legacy transaction or receipt is an RLP list already; a
    typed one (type byte + payload) is carried as a byte string, as devp2p does."""
    return encoded if encoded and encoded[0] >= 0xC0 else rlp.encode(encoded)


def ordered_trie_values(get: Callable[[bytes], bytes], root: bytes) -> list[bytes]:
    """The values of an ordered trie (value i under the key rlp(i): a block's transactions,
    receipts or withdrawals) in index order, reading and decoding each node once. py-evm
    looks each index up from the root instead, decoding the top of the trie once per item:
    most of what persisting a block cost here.

    `get` reads a node by its hash (the root always, a child when its RLP is 32 bytes or
    more; smaller children are embedded in their parent). Raises what `get` raises for a
    missing node (KeyError), ValueError if the nodes do not form an ordered trie of the
    indices 0..n-1.
    """
    if root == BLANK_ROOT_HASH:
        return []
    found: dict[int, bytes] = {}
    stack: list[tuple[Any, Nibbles]] = [(root, ())]
    while stack:
        reference, path = stack.pop()
        node = rlp.decode(get(reference)) if isinstance(reference, bytes) else reference
        if not isinstance(node, list) or len(node) not in (2, 17):
            raise ValueError(f"ordered trie 0x{root.hex()}: no trie node at path {path}")
        if len(node) == 17:
            stack.extend(
                (child, (*path, nibble)) for nibble, child in enumerate(node[:16]) if child
            )
            leaf: tuple[Nibbles, Any] | None = (path, node[16]) if node[16] else None
        else:
            nibbles, is_leaf = hex_prefix_decode(node[0])
            if not is_leaf:
                stack.append((node[1], path + nibbles))
                continue
            leaf = (path + nibbles, node[1])
        if leaf is not None:
            key, value = leaf
            if not isinstance(value, bytes) or len(key) % 2:
                raise ValueError(f"ordered trie 0x{root.hex()}: a malformed leaf at path {key}")
            found[rlp.decode(nibbles_key(key), sedes=big_endian_int)] = value
    if sorted(found) != list(range(len(found))):
        raise ValueError(f"ordered trie 0x{root.hex()}: indices are not 0..{len(found) - 1}")
    return [found[index] for index in range(len(found))]


def _trie_items(db: DatabaseAPI, root: bytes) -> list[bytes]:
    return [_as_rlp_item(item) for item in ordered_trie_values(db.__getitem__, root)]


def body_record(db: DatabaseAPI, fields: list[bytes]) -> bytes:
    """The block body of the decoded header `fields`: RLP [transactions, uncles(, withdrawals)],
    read back from the transaction (and withdrawal) trie and the uncle list in `db`.

    Raises KeyError if the block's data is not in `db`.
    """
    uncles_hash, transaction_root = fields[1], fields[4]
    parts = [encode_raw_list(_trie_items(db, transaction_root))]
    parts.append(rlp.encode([]) if uncles_hash == EMPTY_UNCLE_HASH else db[uncles_hash])
    if len(fields) > 16:  # withdrawals root: Shanghai and later
        parts.append(encode_raw_list(_trie_items(db, fields[16])))
    return encode_raw_list(parts)


def receipts_record(db: DatabaseAPI, fields: list[bytes]) -> bytes:
    """The block's receipts as devp2p sends them: an RLP list, read back from its receipt trie."""
    return encode_raw_list(_trie_items(db, fields[5]))
