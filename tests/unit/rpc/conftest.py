"""A datadir holding the rpc-compat-prague chain (45 blocks, Frontier..Prague), per module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.rules import ChainRules
from khipu.rpc.chain_view import ChainView
from khipu.rpc.config import RpcConfig
from khipu.rpc.context import RpcContext
from khipu.rpc.dispatch import Dispatcher
from khipu.rpc.errors import RpcError
from khipu.rpc.registry import load_methods
from khipu.storage.chain_store import ChainStore
from tests.conftest import require_testdata


@pytest.fixture(scope="module")
def chain_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ChainStore, ChainRules]]:
    folder = require_testdata("rpc-compat-prague")
    document = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    store = ChainStore.open(tmp_path_factory.mktemp("rpc-chain"), genesis, document)
    import_files(store, rules, [folder / "chain.rlp"], check_seal=False)
    try:
        yield store, rules
    finally:
        store.close()


class Client:
    """Calls methods through the dispatcher, as the HTTP server does, without sockets."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def call(self, method: str, *params: Any) -> Any:
        return self.dispatcher.call(method, list(params))

    def error(self, method: str, *params: Any) -> RpcError:
        with pytest.raises(RpcError) as caught:
            self.dispatcher.call(method, list(params))
        return caught.value


@pytest.fixture(scope="module")
def rpc(chain_store: tuple[ChainStore, ChainRules]) -> Client:
    store, rules = chain_store
    context = RpcContext(ChainView(store, rules), RpcConfig(port=0, logs_block_range=20))
    return Client(Dispatcher(context, load_methods()))
