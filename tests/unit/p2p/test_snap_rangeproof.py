"""snap/1 range proofs: ranges of a random trie, built with py-trie, verified by our checker;
tampered responses must fail."""

from __future__ import annotations

import random

import pytest
import rlp
from trie import HexaryTrie

from khipu.p2p.snap.rangeproof import verify_range_proof
from khipu.p2p.snap.trie_nodes import BadProof


def make_trie(size: int, seed: int) -> tuple[bytes, list[bytes], list[bytes], HexaryTrie]:
    rng = random.Random(seed)
    trie = HexaryTrie(db={})
    items = {rng.randbytes(32): rng.randbytes(rng.choice([1, 5, 40, 100])) for _ in range(size)}
    for key, value in items.items():
        trie[key] = value
    keys = sorted(items)
    return bytes(trie.root_hash), keys, [items[k] for k in keys], trie


def proof(trie: HexaryTrie, *keys: bytes) -> list[bytes]:
    nodes: dict[bytes, None] = {}
    for key in keys:
        for node in trie.get_proof(key):
            encoded = rlp.encode(node)
            if len(encoded) >= 32:  # embedded nodes travel inside their parents
                nodes[encoded] = None
    return list(nodes)


@pytest.mark.parametrize("seed", range(4))
def test_ranges_verify_and_report_more(seed: int) -> None:
    root, keys, values, trie = make_trie(120, seed)
    rng = random.Random(seed)
    for _ in range(12):
        start = rng.randrange(0, len(keys) - 1)
        end = rng.randrange(start + 1, len(keys) + 1)
        origin = keys[start]
        if rng.random() < 0.5:  # an origin between two keys proves absence on the left
            origin = (int.from_bytes(origin, "big") - 1).to_bytes(32, "big")
        more = verify_range_proof(
            root, origin, keys[start:end], values[start:end], proof(trie, origin, keys[end - 1])
        )
        assert more == (end < len(keys))


def test_single_leaf_and_whole_trie_and_empty_tail() -> None:
    root, keys, values, trie = make_trie(60, 7)
    assert verify_range_proof(root, keys[5], [keys[5]], [values[5]], proof(trie, keys[5]))
    assert not verify_range_proof(root, keys[0], keys, values, [])
    past_end = b"\xff" * 32
    assert not verify_range_proof(root, past_end, [], [], proof(trie, past_end))
    with pytest.raises(BadProof):  # claims nothing after the origin, but there is
        verify_range_proof(root, keys[10], [], [], proof(trie, keys[10]))


@pytest.mark.parametrize("tamper", ["drop_middle", "change_value", "drop_last_proof", "reorder"])
def test_tampered_ranges_fail(tamper: str) -> None:
    root, keys, values, trie = make_trie(200, 3)
    ks, vs = keys[20:80], values[20:80]
    nodes = proof(trie, ks[0], ks[-1])
    if tamper == "drop_middle":
        ks, vs = ks[:30] + ks[31:], vs[:30] + vs[31:]
    elif tamper == "change_value":
        vs = [*vs[:10], b"evil", *vs[11:]]
    elif tamper == "drop_last_proof":
        nodes = nodes[:-1]
    else:
        ks = [ks[1], ks[0], *ks[2:]]
    with pytest.raises(BadProof):
        verify_range_proof(root, ks[0] if tamper != "reorder" else keys[20], ks, vs, nodes)


def test_whole_trie_without_proof_must_be_complete() -> None:
    root, keys, values, _ = make_trie(40, 11)
    with pytest.raises(BadProof):
        verify_range_proof(root, keys[0], keys[:-1], values[:-1], [])
