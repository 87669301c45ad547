"""Block import: decode, validate every rule, execute, check the results, persist.

Each block is checked in full before it is stored: header rules (py-evm's per-fork checks, the
terminal total difficulty, the DAO extra data, the Ethash seal), uncles, then execution, after
which the computed header must equal the given one field by field (state root, receipts root,
logs bloom, gas used, ...). The first invalid block raises `InvalidBlock`; everything before it
is already stored, and importing the same file again skips what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI
from eth.exceptions import HeaderNotFound, UnrecognizedTransactionType
from eth.vm.chain_context import ChainContext
from eth_utils import ValidationError

from khipu.chain.chain import KhipuChain
from khipu.chain.rules import ChainRules
from khipu.chain.seal import InvalidSeal, check_ethash_seal

DAO_EXTRA_DATA = b"dao-hard-fork"
DAO_EXTRA_DATA_RANGE = 10  # geth's params.DAOForkExtraRange

# Header fields compared after execution, each named as the check that failed.
RESULT_FIELDS: tuple[tuple[str, str], ...] = (
    # geth's order (core.BlockValidator.ValidateState): gas, bloom, receipts, requests, state.
    ("gas_used", "gas used"),
    ("bloom", "logs bloom"),
    ("receipt_root", "receipts root"),
    ("requests_hash", "requests hash"),
    ("state_root", "state root"),
    ("transaction_root", "transactions root"),
    ("uncles_hash", "uncles hash"),
    ("withdrawals_root", "withdrawals root"),
    ("blob_gas_used", "blob gas used"),
    ("excess_blob_gas", "excess blob gas"),
    ("base_fee_per_gas", "base fee"),
    ("difficulty", "difficulty"),
    ("gas_limit", "gas limit"),
)


class InvalidBlock(Exception):
    """A block broke a rule. Carries its number, hash and the check that failed."""

    def __init__(self, number: int, block_hash: bytes, check: str, detail: str) -> None:
        super().__init__(f"invalid block #{number} 0x{block_hash.hex()}: {check}: {detail}")
        self.number = number
        self.block_hash = block_hash
        self.check = check
        self.detail = detail


class MalformedBlock(Exception):
    """Bytes that do not decode as a block of the fork they claim; says where they were."""


# Header fields that geth decodes into fixed-size arrays. py-evm's sedes also accept other
# lengths (a mix hash of any length, a nonce of 8 bytes or more, empty coinbase and roots).
FIXED_LENGTH_FIELDS: tuple[tuple[str, int], ...] = (
    ("coinbase", 20),
    ("state_root", 32),
    ("transaction_root", 32),
    ("receipt_root", 32),
    ("mix_hash", 32),
    ("nonce", 8),
    ("withdrawals_root", 32),
)


@dataclass(frozen=True)
class ImportResult:
    """What importing one block did."""

    header: BlockHeaderAPI
    transactions: int
    gas_used: int
    already_known: bool


def decode_block(raw: bytes, rules: ChainRules) -> BlockAPI:
    """Decode an RLP block with the block class of the fork its header falls in.

    Raises MalformedBlock if the bytes are not an RLP block of that fork, including a typed
    transaction whose type the fork does not know (an EIP-1559 transaction before London) and
    a header or uncle whose fixed-size fields (FIXED_LENGTH_FIELDS) have another length.
    """
    try:
        nested = rlp.decode(raw)
        header_fields = nested[0]
        number = rlp.sedes.big_endian_int.deserialize(header_fields[8])
        difficulty = rlp.sedes.big_endian_int.deserialize(header_fields[7])
        timestamp = rlp.sedes.big_endian_int.deserialize(header_fields[11])
        block_class = rules.vm_class(number, timestamp, difficulty).get_block_class()
        block: BlockAPI = block_class.deserialize(nested)  # type: ignore[attr-defined]
    except (
        rlp.DecodingError,
        rlp.DeserializationError,
        IndexError,
        TypeError,
        UnrecognizedTransactionType,
    ) as exc:
        raise MalformedBlock(f"not a valid block: {exc}") from exc
    _check_field_lengths(block.header, "header")
    for index, uncle in enumerate(block.uncles):
        _check_field_lengths(uncle, f"uncle {index}")
    return block


def _check_field_lengths(header: BlockHeaderAPI, where: str) -> None:
    for name, length in FIXED_LENGTH_FIELDS:
        value = getattr(header, name, None)
        if value is not None and len(value) != length:
            raise MalformedBlock(
                f"block #{header.block_number}: {where} {name} has {len(value)} bytes, not {length}"
            )


# Executes a block on its parent state and returns the executed block, as py-evm's
# `import_block` does (nothing persisted but trie nodes); raises ValidationError if it is invalid.
BlockExecutor = Callable[[BlockAPI], BlockAPI]


class BlockImporter:
    """Validates, executes and stores blocks on a chain, one at a time, in order.

    With an `executor` (such as khipu.execution's ParallelBlockExecutor) blocks are executed by
    it instead of py-evm's serial `import_block`; its result is checked against the header the
    same way.
    """

    def __init__(
        self, chain: KhipuChain, *, check_seal: bool = True, executor: BlockExecutor | None = None
    ) -> None:
        self.chain = chain
        self.rules = chain.rules
        self.check_seal = check_seal
        self.executor = executor

    def import_block(self, block: BlockAPI) -> ImportResult:
        """Validate, execute and persist `block`. Raises InvalidBlock naming the failed check."""
        header = block.header
        chaindb = self.chain.chaindb
        if chaindb.header_exists(header.hash):
            return ImportResult(header, len(block.transactions), header.gas_used, True)
        try:
            parent = chaindb.get_block_header_by_hash(header.parent_hash)
        except HeaderNotFound:
            raise self._invalid(
                header, "parent", f"unknown parent 0x{header.parent_hash.hex()}"
            ) from None

        self._validate_header(header, parent)
        self._validate_uncles(block)
        imported = self._execute(block, parent)
        try:
            chaindb.persist_block(imported)
        except ValidationError as exc:
            raise self._invalid(header, "persist", str(exc)) from exc
        return ImportResult(imported.header, len(block.transactions), header.gas_used, False)

    def _validate_header(self, header: BlockHeaderAPI, parent: BlockHeaderAPI) -> None:
        vm_class = self.rules.vm_class_for_header(header)
        try:
            vm_class.validate_header(header, parent)
        except ValidationError as exc:
            raise self._invalid(header, "header", str(exc)) from exc
        self._validate_terminal_difficulty(header, parent)
        self._validate_dao_extra_data(header, header)
        if self.check_seal and not self.rules.is_proof_of_stake(
            header.block_number, header.difficulty
        ):
            self._validate_seal(header, header)

    def _validate_seal(self, header: BlockHeaderAPI, block_header: BlockHeaderAPI) -> None:
        try:
            check_ethash_seal(header)
        except InvalidSeal as exc:
            raise self._invalid(block_header, "seal", str(exc)) from exc

    def _validate_terminal_difficulty(self, header: BlockHeaderAPI, parent: BlockHeaderAPI) -> None:
        ttd = self.rules.config.terminal_total_difficulty
        if ttd is None:
            return
        parent_td = self.chain.chaindb.get_score(parent.hash)
        if parent.difficulty == 0:
            return  # the parent is already a proof-of-stake block
        if header.difficulty == 0 and parent_td < ttd:
            raise self._invalid(
                header,
                "terminal total difficulty",
                f"proof-of-stake block on parent with total difficulty {parent_td} < {ttd}",
            )
        if header.difficulty > 0 and parent_td >= ttd:
            raise self._invalid(
                header,
                "terminal total difficulty",
                f"proof-of-work block after terminal total difficulty {ttd} was reached",
            )

    def _validate_dao_extra_data(
        self, header: BlockHeaderAPI, block_header: BlockHeaderAPI
    ) -> None:
        # `header` is the block's own header or one of its uncles (geth checks both).
        config = self.rules.config
        if not config.dao_fork_support or config.dao_fork_block is None:
            return
        offset = header.block_number - config.dao_fork_block
        if 0 <= offset < DAO_EXTRA_DATA_RANGE and header.extra_data != DAO_EXTRA_DATA:
            which = "" if header is block_header else f"uncle #{header.block_number}: "
            raise self._invalid(
                block_header,
                "DAO extra data",
                f"{which}expected {DAO_EXTRA_DATA!r}, got {header.extra_data!r}",
            )

    def _validate_uncles(self, block: BlockAPI) -> None:
        try:
            self.chain.validate_uncles(block)
        except ValidationError as exc:
            raise self._invalid(block.header, "uncles", str(exc)) from exc
        for uncle in block.uncles:
            self._validate_dao_extra_data(uncle, block.header)
            if self.check_seal:
                self._validate_seal(uncle, block.header)

    def _execute(self, block: BlockAPI, parent: BlockHeaderAPI) -> BlockAPI:
        header = block.header
        if self.executor is not None:
            try:
                executed = self.executor(block)
            except ValidationError as exc:
                raise self._invalid(header, "execution", str(exc)) from exc
            self._compare_results(header, executed.header)
            return executed
        vm_class = self.rules.vm_class_for_header(header)
        base = vm_class.create_header_from_parent(parent, timestamp=header.timestamp)
        vm = vm_class(
            header=base.copy(gas_used=header.gas_used),
            chaindb=self.chain.chaindb,
            chain_context=ChainContext(self.rules.config.chain_id),
            consensus_context=self.chain.consensus_context,
        )
        try:
            imported = vm.import_block(block).block
        except ValidationError as exc:
            raise self._invalid(header, "execution", str(exc)) from exc
        self._compare_results(header, imported.header)
        return imported

    def _compare_results(self, given: BlockHeaderAPI, computed: BlockHeaderAPI) -> None:
        for attribute, check in RESULT_FIELDS:
            expected = getattr(given, attribute, None)
            actual = getattr(computed, attribute, None)
            if expected != actual:
                raise self._invalid(
                    given, check, f"header has {_show(expected)}, execution gives {_show(actual)}"
                )
        if computed.hash != given.hash:
            raise self._invalid(
                given, "header", f"recomputed header hash 0x{computed.hash.hex()} differs"
            )

    @staticmethod
    def _invalid(header: BlockHeaderAPI, check: str, detail: str) -> InvalidBlock:
        return InvalidBlock(header.block_number, header.hash, check, detail)


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int) and value > 2**64:
        return hex(value)
    return str(value)
