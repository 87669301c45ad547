"""Real mainnet blocks with their pre-state witnesses (Nimbus PersistBlockTests), for the importer.

A file is `{"blockNumber": hex, "state": {hex key: hex value}}`: the key-value entries Nimbus read
while importing block N on top of N-1 (see shared/data/mainnet/SOURCES.md). Keys of 32 bytes are
keccak(value): state, storage and transaction trie nodes. The other keys are Nimbus' typed keys,
a kind byte and then a hash or a number:

- 0x00 + hash: `genericHash`, here the RLP headers of blocks N-1 and N and, for a block with
  uncles, the RLP list of its uncle headers under the uncles hash;
- 0x01 + number (32 bytes, little-endian): `blockNumberToHash`, RLP of the block hash;
- 0x02 + hash: `blockHashToScore`, RLP of the total difficulty;
- 0x06 + code hash: `contractHash`, the contract code.
Other kinds (0x03 transaction locations, 0x04 head, 0x05 slot preimages) are not needed.
BLOCKHASH can only see N-1: no file holds a number->hash entry below it (checked on import).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth.constants import EMPTY_UNCLE_HASH
from eth.db.atomic import AtomicDB
from eth.db.chain import ChainDB
from eth_hash.auto import keccak
from eth_utils import ValidationError
from trie.hexary import HexaryTrie

from khipu.chain.chain import KhipuChain
from khipu.chain.genesis import header_class_of
from khipu.chain.importer import BlockExecutor, BlockImporter, ImportResult
from khipu.chain.rules import ChainRules

GENERIC_HASH = 0x00
BLOCK_NUMBER_TO_HASH = 0x01
BLOCK_HASH_TO_SCORE = 0x02
CONTRACT_HASH = 0x06
MAX_UNCLES = 2
MAX_UNCLE_DEPTH = 6


class WitnessError(AssertionError):
    """A witness file lacks an entry the block needs, or holds one that does not decode."""


@dataclass(frozen=True)
class Witness:
    """The entries of one witness file, split by kind."""

    path: Path
    number: int
    nodes: dict[bytes, bytes]  # keccak(value) -> value: trie nodes and code
    typed: dict[bytes, bytes]  # 33-byte Nimbus keys -> value

    def generic(self, key: bytes, what: str) -> bytes:
        """The `genericHash` entry of `key`. Raises WitnessError naming `what` if absent."""
        value = self.typed.get(bytes([GENERIC_HASH]) + key)
        if value is None:
            raise WitnessError(f"{self.path.name}: no {what} under 0x{key.hex()}")
        return value

    def block_hash(self, number: int) -> bytes | None:
        """The hash of canonical block `number`, if the witness holds it."""
        key = bytes([BLOCK_NUMBER_TO_HASH]) + number.to_bytes(32, "little")
        value = self.typed.get(key)
        return None if value is None else bytes(rlp.decode(value))

    def ancestor_numbers(self) -> list[int]:
        """The block numbers whose hashes the witness holds."""
        return sorted(
            int.from_bytes(key[1:], "little")
            for key in self.typed
            if key[0] == BLOCK_NUMBER_TO_HASH
        )

    def score(self, block_hash: bytes) -> int:
        """The total difficulty of `block_hash`. Raises WitnessError if absent."""
        value = self.typed.get(bytes([BLOCK_HASH_TO_SCORE]) + block_hash)
        if value is None:
            raise WitnessError(f"{self.path.name}: no score of 0x{block_hash.hex()}")
        return rlp.sedes.big_endian_int.deserialize(rlp.decode(value))  # type: ignore[no-any-return]


def load_witness(path: Path) -> Witness:
    """Read a witness file: trie nodes and code by hash, the other entries by Nimbus key.

    Raises WitnessError if a trie node or code is not the preimage of its hash.
    """
    document = json.loads(path.read_text())
    nodes: dict[bytes, bytes] = {}
    typed: dict[bytes, bytes] = {}
    for key_hex, value_hex in document["state"].items():
        key, value = _unhex(key_hex), _unhex(value_hex)
        if len(key) == 33 and key[0] == CONTRACT_HASH:
            key = key[1:]
        if len(key) == 32:
            if keccak(value) != key:
                raise WitnessError(f"{path.name}: value of 0x{key.hex()} is not its preimage")
            nodes[key] = value
        else:
            typed[key] = value
    return Witness(path, int(document["blockNumber"], 16), nodes, typed)


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text[:2].lower() == "0x" else text)


@dataclass(frozen=True)
class WitnessBlock:
    """Block N rebuilt from the witness, and its parent header."""

    block: BlockAPI
    parent: BlockHeaderAPI


def rebuild_block(witness: Witness, rules: ChainRules) -> WitnessBlock:
    """Headers N-1 and N, N's transactions (by walking its transaction trie) and uncles.

    Raises WitnessError if an entry is missing or the header numbers are not N-1 and N.
    """
    block_hash = witness.block_hash(witness.number)
    parent_hash = witness.block_hash(witness.number - 1)
    if block_hash is None or parent_hash is None:
        raise WitnessError(f"{witness.path.name}: no number->hash entry for N or N-1")
    parent = _decode_header(witness.generic(parent_hash, "parent header"), rules)
    header = _decode_header(witness.generic(block_hash, "header"), rules)
    if (parent.block_number, header.block_number) != (witness.number - 1, witness.number):
        raise WitnessError(
            f"{witness.path.name}: headers are #{parent.block_number}, #{header.block_number}"
        )

    vm_class = rules.vm_class_for_header(header)
    transactions = _read_transactions(witness, header, vm_class.get_transaction_builder())
    uncles: list[BlockHeaderAPI] = []
    if header.uncles_hash != EMPTY_UNCLE_HASH:
        encoded = witness.generic(header.uncles_hash, "uncle list")
        uncle_class = header_class_of(
            rules.vm_class_by_number(header.block_number).get_block_class()
        )
        uncles = [rlp.decode(rlp.encode(item), sedes=uncle_class) for item in rlp.decode(encoded)]
    block = vm_class.get_block_class()(header=header, transactions=transactions, uncles=uncles)
    return WitnessBlock(block, parent)


def _decode_header(encoded: bytes, rules: ChainRules) -> BlockHeaderAPI:
    fields = rlp.decode(encoded)
    number = rlp.sedes.big_endian_int.deserialize(fields[8])
    header_class = header_class_of(rules.vm_class_by_number(number).get_block_class())
    header: BlockHeaderAPI = rlp.decode(encoded, sedes=header_class)
    return header


def _read_transactions(
    witness: Witness, header: BlockHeaderAPI, builder: type
) -> list[SignedTransactionAPI]:
    trie = HexaryTrie(witness.nodes, header.transaction_root)
    transactions = []
    for index in itertools.count():
        try:
            encoded = trie.get(rlp.encode(index))
        except KeyError as exc:  # trie.exceptions.MissingTrieNode is a KeyError
            raise WitnessError(
                f"{witness.path.name}: transaction trie node missing: {exc}"
            ) from exc
        if not encoded:
            break
        transactions.append(builder.decode(encoded))  # type: ignore[attr-defined]
    return transactions


class WitnessChain(KhipuChain):
    """A chain that checks uncles only as far as a witness allows.

    The witness holds no headers older than N-1, so an uncle's parent and the recent uncles of
    the ancestors (py-evm's `validate_uncles`) cannot be looked up. What is checked: at most two
    uncles, no duplicate, none equal to the block or its parent, each 1..6 blocks older. The uncle
    rewards, and so the uncles' number and coinbase, are checked through the state root.
    """

    def validate_uncles(self, block: BlockAPI) -> None:
        uncles = block.uncles
        if len(uncles) > MAX_UNCLES:
            raise ValidationError(f"{len(uncles)} uncles, at most {MAX_UNCLES}")
        if len({uncle.hash for uncle in uncles}) != len(uncles):
            raise ValidationError("duplicate uncles")
        for uncle in uncles:
            depth = block.number - uncle.block_number
            if uncle.hash in (block.hash, block.header.parent_hash) or not (
                1 <= depth <= MAX_UNCLE_DEPTH
            ):
                raise ValidationError(f"uncle #{uncle.block_number} cannot be an uncle here")


def import_witness_block(
    witness: Witness,
    rules: ChainRules,
    unread_code: frozenset[bytes] = frozenset(),
    executor_factory: Callable[[KhipuChain], BlockExecutor] | None = None,
) -> ImportResult:
    """Import block N with khipu's importer on a database holding only the witness.

    The parent header is stored as a checkpoint with its total difficulty, so py-evm's
    BLOCKHASH sees exactly the ancestors the witness holds (N-1; SOURCES.md: Nimbus recorded
    number->hash only for N-1 and N). `unread_code` names code hashes that py-evm loads but
    Nimbus never read, so the witness lacks them; they are stored as empty code. With
    `executor_factory`, the block is executed by the executor it makes for the chain. Raises
    InvalidBlock if khipu rejects the block, or WitnessError if the witness is incomplete.
    """
    older = [n for n in witness.ancestor_numbers() if n < witness.number - 1]
    if older:
        raise WitnessError(f"{witness.path.name}: ancestors {older} would need their headers")
    rebuilt = rebuild_block(witness, rules)
    db = AtomicDB()
    for key, value in witness.nodes.items():
        db[key] = value
    for code_hash in unread_code:
        if code_hash in witness.nodes:
            raise WitnessError(f"{witness.path.name}: code 0x{code_hash.hex()} is present")
        db[code_hash] = b""
    parent = rebuilt.parent
    # persist_checkpoint_header adds the header's own difficulty to the score it is given.
    ChainDB(db).persist_checkpoint_header(parent, witness.score(parent.hash) - parent.difficulty)
    chain = WitnessChain.for_rules(rules)(db)
    executor = None if executor_factory is None else executor_factory(chain)
    return BlockImporter(chain, check_seal=False, executor=executor).import_block(rebuilt.block)
