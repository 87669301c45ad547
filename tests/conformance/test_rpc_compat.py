"""The hive rpc-compat suite (ethereum/execution-apis `tests/`) against khipu's JSON-RPC server.

Each suite's chain.rlp is imported once per session into a scratch datadir, the server is
started on 127.0.0.1 with an ephemeral port, and every `.io` file is one test case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.rules import ChainRules
from khipu.rpc.config import RpcConfig
from khipu.rpc.server import RpcServer
from khipu.storage.chain_store import ChainStore
from tests import conftest
from tests.conformance.rpc_compat_cases import RpcCase, RpcClient, find_cases, mismatch
from tests.conformance.rpc_compat_expected import expected_failure

SUITES = ("rpc-compat-prague", "rpc-compat")


def _cases() -> list[object]:
    params: list[object] = []
    for suite in SUITES:
        folder = conftest.testdata_root() / suite
        if not folder.is_dir():
            params.append(pytest.param(suite, None, id=f"{suite}-absent"))
            continue
        for case in find_cases(folder):
            marks = []
            reason = expected_failure(suite, case.name)
            if reason is not None:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            params.append(pytest.param(suite, case, id=f"{suite}/{case.name}", marks=marks))
    return params


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RpcServer]]:
    started: dict[str, RpcServer] = {}
    stores = []
    try:
        yield _LazyServers(tmp_path_factory, started, stores)  # type: ignore[misc]
    finally:
        for server in started.values():
            server.stop()
        for store in stores:
            store.close()


class _LazyServers(dict):  # type: ignore[type-arg]
    """Imports a suite's chain and starts its server the first time a case asks for it."""

    def __init__(self, factory: pytest.TempPathFactory, started: dict, stores: list) -> None:  # type: ignore[type-arg]
        super().__init__()
        self._factory = factory
        self._started = started
        self._stores = stores

    def __missing__(self, suite: str) -> RpcServer:
        folder = conftest.testdata_root() / suite
        document = json.loads((folder / "genesis.json").read_text())
        genesis = Genesis.from_json(document)
        rules = ChainRules(genesis.config)
        store = ChainStore.open(self._factory.mktemp(suite), genesis, document)
        self._stores.append(store)
        import_files(store, rules, [folder / "chain.rlp"], check_seal=False)
        server = RpcServer(store, rules, RpcConfig(port=0), genesis=genesis)
        server.start()
        self._started[suite] = server
        self[suite] = server
        return server


@pytest.mark.parametrize(("suite", "case"), _cases())
def test_rpc_compat(servers: dict[str, RpcServer], suite: str, case: RpcCase | None) -> None:
    if case is None:
        pytest.skip(f"test data {conftest.testdata_root() / suite} is absent (set KHIPU_TESTDATA)")
    client = RpcClient(servers[suite].url)
    try:
        for exchange in case.exchanges:
            actual = client.post(exchange.request)
            problem = mismatch(case, exchange.expected, actual)
            assert problem is None, f"{case.name}: {exchange.request[:200]}\n{problem}"
    finally:
        client.close()
