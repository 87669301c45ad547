"""Importing block files into a datadir: the work behind `khipu import`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eth.abc import BlockAPI, BlockHeaderAPI

from khipu.chain.block_files import count_rlp_blocks, iter_rlp_blocks
from khipu.chain.chain import KhipuChain, open_chain
from khipu.chain.importer import BlockExecutor, BlockImporter, decode_block
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.storage.chain_store import ChainStore


class UnsupportedBlockFile(ValueError):
    """A file that is neither a geth-style .rlp export nor an .era1 history file."""


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: the head reached and the work done on the way."""

    head: BlockHeaderAPI
    blocks: int
    txs: int
    gas: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        """The `--json` form of `khipu import`."""
        return {
            "head": {
                "number": self.head.block_number,
                "hash": "0x" + self.head.hash.hex(),
                "stateRoot": "0x" + self.head.state_root.hex(),
            },
            "blocks": self.blocks,
            "txs": self.txs,
            "gas": self.gas,
            "seconds": round(self.seconds, 3),
        }


def count_blocks(paths: Iterable[Path]) -> int:
    """How many blocks the files hold, without decoding them."""
    return sum(_count_file(Path(path)) for path in paths)


def iter_file_blocks(path: Path, rules: ChainRules) -> Iterator[BlockAPI]:
    """The decoded blocks of one file, in order. Raises UnsupportedBlockFile or MalformedBlock."""
    suffix = Path(path).suffix
    if suffix == ".era1":
        from khipu.chain.era1_blocks import iter_era1_blocks

        yield from iter_era1_blocks(Path(path), rules)
        return
    if suffix != ".rlp":
        raise UnsupportedBlockFile(f"{path}: expected a .rlp export or an .era1 file")
    for raw in iter_rlp_blocks(Path(path)):
        yield decode_block(raw, rules)


def _count_file(path: Path) -> int:
    if path.suffix == ".era1":
        from khipu.chain.era1_blocks import count_era1_blocks

        return count_era1_blocks(path)
    if path.suffix != ".rlp":
        raise UnsupportedBlockFile(f"{path}: expected a .rlp export or an .era1 file")
    return count_rlp_blocks(path)


def with_next(blocks: Iterator[BlockAPI]) -> Iterator[tuple[BlockAPI, BlockAPI | None]]:
    """Each block with the one after it (None for the last). If reading the next block raises,
    the current one still comes (with None) and the error is raised when the caller asks for
    more: a block is handled before a later block's fault stops the import."""
    try:
        current = next(blocks)
    except StopIteration:
        return
    while True:
        try:
            following = next(blocks)
        except StopIteration:
            yield current, None
            return
        except Exception as error:
            yield current, None
            raise error
        yield current, following
        current = following


def import_files(
    store: ChainStore,
    rules: ChainRules,
    paths: Iterable[Path],
    *,
    check_seal: bool = True,
    progress: ImportProgress | None = None,
    executor: Callable[[KhipuChain], BlockExecutor] | None = None,
) -> ImportSummary:
    """Import every block of `paths` in order; blocks already stored are skipped.

    `executor`, if given, makes the block executor from the chain opened on `store` (see
    `BlockImporter`); the caller owns (and closes) what it makes. Raises InvalidBlock at the
    first invalid block, after everything before it is stored.
    """
    paths = [Path(path) for path in paths]
    if progress is None:
        progress = ImportProgress(count_blocks(paths))
    chain = open_chain(rules, store.db)
    importer = BlockImporter(
        chain, check_seal=check_seal, executor=None if executor is None else executor(chain)
    )
    # An executor that can prepare the next block (ParallelBlockExecutor: its senders) hears of it.
    expect = getattr(importer.executor, "expect", None)
    blocks = (block for path in paths for block in iter_file_blocks(path, rules))
    try:
        for block, following in with_next(blocks):
            if expect is not None and following is not None:
                expect(following)
            result = importer.import_block(block)
            progress.advance(
                result.header.block_number,
                result.transactions,
                result.gas_used,
                not result.already_known,
            )
    finally:
        store.db.sync()
    return ImportSummary(
        store.head(), progress.imported, progress.txs, progress.gas, progress.seconds
    )
