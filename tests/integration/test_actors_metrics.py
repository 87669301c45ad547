"""The /metrics endpoint, scraped over HTTP on 127.0.0.1 with an ephemeral port."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from khipu.actors.metrics import MetricsServer, NodeMetrics


@pytest.fixture
def served() -> Iterator[tuple[NodeMetrics, MetricsServer]]:
    metrics = NodeMetrics()
    server = MetricsServer(metrics, addr="127.0.0.1", port=0).start()
    yield metrics, server
    server.stop()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_scrape_shows_what_the_components_recorded(served, tmp_path) -> None:
    metrics, server = served
    assert server.port != 0 and server.url.endswith("/metrics")
    metrics.blocks_imported.inc(3)
    metrics.transactions_imported.inc(42)
    metrics.gas_used.inc(21_000 * 42)
    metrics.import_rate.set(12.5)
    metrics.parallel_rate.set(0.75)
    metrics.workers.labels(state="busy").set(3)
    metrics.actor_restarts.labels(actor="StorageWriter").inc()
    metrics.rpc_requests.labels(method="eth_getBalance", outcome="ok").inc(2)
    metrics.rpc_latency.labels(method="eth_getBalance").observe(0.003)
    (tmp_path / "kesque" / "account").mkdir(parents=True)
    (tmp_path / "kesque" / "account" / "00000000000000000000.log").write_bytes(b"x" * 4096)
    (tmp_path / "kesque" / "account" / "index-1.idx").write_bytes(b"y" * 100)
    (tmp_path / "chaindata").mkdir()
    (tmp_path / "chaindata" / "000001.ldb").write_bytes(b"z" * 7)
    metrics.store_size.watch(tmp_path)

    samples = scrape(server.url)

    assert samples[("khipu_blocks_imported_total", ())] == 3
    assert samples[("khipu_transactions_imported_total", ())] == 42
    assert samples[("khipu_gas_used_total", ())] == 882_000
    assert samples[("khipu_import_rate_blocks_per_second", ())] == 12.5
    assert samples[("khipu_parallel_rate", ())] == 0.75
    assert samples[("khipu_execution_workers", (("state", "busy"),))] == 3
    assert samples[("khipu_actor_restarts_total", (("actor", "StorageWriter"),))] == 1
    ok = (("method", "eth_getBalance"), ("outcome", "ok"))
    assert samples[("khipu_rpc_requests_total", ok)] == 2
    assert (
        samples[("khipu_rpc_request_duration_seconds_count", (("method", "eth_getBalance"),))] == 1
    )
    bucket = (("le", "0.005"), ("method", "eth_getBalance"))
    assert samples[("khipu_rpc_request_duration_seconds_bucket", bucket)] == 1
    assert samples[("khipu_store_size_bytes", (("topic", "account"),))] == 4196
    assert samples[("khipu_store_size_bytes", (("topic", "chaindata"),))] == 7


def test_other_paths_are_not_found(served) -> None:
    _, server = served
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
    assert raised.value.code == 404


def test_a_custom_path_and_separate_registries() -> None:
    first, second = NodeMetrics(), NodeMetrics()  # no clash: each has its own registry
    first.blocks_imported.inc(5)
    server = MetricsServer(second, port=0, path="/prom").start()
    try:
        samples = scrape(f"http://127.0.0.1:{server.port}/prom")
    finally:
        server.stop()
    assert samples[("khipu_blocks_imported_total", ())] == 0
