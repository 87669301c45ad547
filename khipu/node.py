"""The node: opens the datadir, brings the chain up to date, then serves until it is told to stop.

Today the node's work is the import of its local chain (the dev chain, generated on first start)
and keeping the store open for readers; JSON-RPC, sync and the actor tree attach here.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from khipu.chain.import_job import import_files
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.config import ChainSelection
from khipu.devnet.generate import DevChainSpec, generate_chain
from khipu.logs import event
from khipu.storage.chain_store import ChainStore

log = logging.getLogger("khipu.node")


class Node:
    """A running node over one datadir."""

    def __init__(self, selection: ChainSelection, dev_chain: DevChainSpec | None = None) -> None:
        self.selection = selection
        self.rules = ChainRules(selection.genesis.config)
        self.dev_chain = dev_chain
        self.stopping = threading.Event()
        self.store: ChainStore | None = None

    def start(self) -> None:
        """Open the store and bring the chain up to date (the dev chain on a dev node)."""
        self.store = ChainStore.open(
            self.selection.datadir, self.selection.genesis, self.selection.genesis_json
        )
        head = self.store.head()
        event(
            log,
            "node started",
            network=self.selection.name,
            datadir=str(self.selection.datadir),
            head=head.block_number,
            hash="0x" + head.hash.hex(),
        )
        if self.dev_chain is not None:
            self._import_dev_chain(self.store, self.dev_chain)

    def _import_dev_chain(self, store: ChainStore, spec: DevChainSpec) -> None:
        folder = self.selection.datadir / "devchain"
        chain_file = folder / "chain.rlp"
        if not chain_file.exists():
            event(log, "generating dev chain", blocks=spec.blocks, profile=spec.profile)
            generate_chain(folder, spec.blocks, spec.txs_per_block, spec.profile, spec.seed)
        progress = ImportProgress(spec.blocks)
        summary = import_files(store, self.rules, [chain_file], progress=progress)
        event(
            log,
            "dev chain imported and verified",
            head=summary.head.block_number,
            hash="0x" + summary.head.hash.hex(),
            state_root="0x" + summary.head.state_root.hex(),
            blocks=summary.blocks,
            txs=summary.txs,
            seconds=round(summary.seconds, 2),
        )

    def serve_forever(self, status_interval: float = 30.0) -> None:
        """Block until `stop()` (SIGINT or SIGTERM), logging the head now and then."""
        while not self.stopping.wait(status_interval):
            if self.store is not None:
                head = self.store.head()
                event(log, "serving", head=head.block_number, hash="0x" + head.hash.hex())

    def stop(self) -> None:
        """Stop serving; `close()` then releases the store."""
        self.stopping.set()

    def close(self) -> None:
        """Flush and close the store."""
        if self.store is not None:
            self.store.close()
            self.store = None
        event(log, "node stopped")


def install_signal_handlers(node: Node) -> None:
    """SIGINT and SIGTERM stop the node cleanly; a second signal forces the exit."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if node.stopping.is_set():
            raise SystemExit(128 + signum)
        event(log, "stopping", signal=signal.Signals(signum).name)
        node.stop()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def run_node(selection: ChainSelection, dev_chain: DevChainSpec | None, datadir: Path) -> int:
    """Start, serve until signalled, close. Returns the exit code."""
    node = Node(selection, dev_chain)
    install_signal_handlers(node)
    try:
        node.start()
        if not node.stopping.is_set():
            event(log, "serving until Ctrl-C", datadir=str(datadir))
            node.serve_forever()
    finally:
        node.close()
    return 0
