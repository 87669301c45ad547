"""The JSON-RPC HTTP server: one thread per connection, answering from the stored chain.

Requests run on the server's own threads and read the database directly, so serving never
blocks block import and one slow request never blocks another; no lock is held across requests.
"""

from __future__ import annotations

import gzip
import ipaddress
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from khipu.chain.config import Genesis
from khipu.chain.rules import ChainRules
from khipu.rpc.chain_view import ChainView
from khipu.rpc.config import RpcConfig
from khipu.rpc.context import HealthSource, RpcContext
from khipu.rpc.dispatch import Dispatcher
from khipu.rpc.registry import load_methods
from khipu.storage.chain_store import ChainStore

log = logging.getLogger("khipu.rpc")

GZIP_MIN_SIZE = 1024  # smaller answers are sent as they are


class RpcServer:
    """HTTP JSON-RPC on `config.host:config.port`; `start()` serves in the background."""

    def __init__(
        self,
        store: ChainStore,
        rules: ChainRules,
        config: RpcConfig | None = None,
        health: HealthSource | None = None,
        genesis: Genesis | None = None,
        sync_status: HealthSource | None = None,
    ) -> None:
        self.config = config or RpcConfig()
        self.context = RpcContext(
            ChainView(store, rules, genesis), self.config, health, sync_status
        )
        self.dispatcher = Dispatcher(self.context, load_methods())
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://host:port/ of the running server (the real port when 0 was asked)."""
        if self._httpd is None:
            return f"http://{self.config.host}:{self.config.port}/"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def serving(self) -> bool:
        """True while started and its serving thread runs (False after `stop` or a crash)."""
        return self._httpd is not None and self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Bind and serve on a daemon thread. Raises OSError if the address is taken."""
        if self._httpd is not None:
            return
        httpd = _HttpServer((self.config.host, self.config.port), _RequestHandler)
        httpd.rpc = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="rpc-http", kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        log.debug("rpc server started on %s", self.url)  # the node logs "json-rpc serving"

    def stop(self) -> None:
        """Stop accepting requests and close the socket; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.context.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.info("rpc server stopped")

    def __enter__(self) -> RpcServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_rpc(
    store: ChainStore,
    rules: ChainRules,
    config: RpcConfig | None = None,
    health: HealthSource | None = None,
    genesis: Genesis | None = None,
    sync_status: HealthSource | None = None,
) -> RpcServer:
    """Create and start the RPC server; the node calls `stop()` on shutdown. `sync_status`
    (eth_syncing, khipu_syncStatus) reports `starting_block` and `highest_block` while syncing."""
    server = RpcServer(store, rules, config, health, genesis, sync_status)
    server.start()
    return server


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    rpc: RpcServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is routine; anything else is worth a log line.
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("rpc client %s went away: %s", client_address, error)
        else:
            log.exception("rpc request from %s failed", client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits for
    # the delayed ACK (~40 ms) before the body arrives.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)

    @property
    def config(self) -> RpcConfig:
        return self.server.rpc.config

    def do_OPTIONS(self) -> None:  # CORS preflight
        self.send_response(204)
        self._cors_headers()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if (self.headers.get("Upgrade") or "").lower() == "websocket":
            self._upgrade_to_websocket()
            return
        # geth answers a bare GET (health checks, browsers) with 200 and no body.
        self._plain(200, "")

    def _upgrade_to_websocket(self) -> None:
        from khipu.rpc.websocket import WebSocketSession, accept_key

        key = self.headers.get("Sec-WebSocket-Key")
        if not key or not self._host_allowed() or not self._origin_allowed():
            self._plain(403, "websocket upgrade refused\n")
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        WebSocketSession(
            self.server.rpc.dispatcher, self.rfile, self.wfile, self.connection
        ).serve()
        self.close_connection = True

    def _origin_allowed(self) -> bool:
        origin = self.headers.get("Origin")
        domains = self.config.cors_domains
        return origin is None or "*" in domains or origin in domains

    def do_POST(self) -> None:
        if not self._host_allowed():
            self._plain(403, "invalid host specified\n")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._plain(411, "content length required\n")
            return
        try:
            length = int(length_header)
        except ValueError:
            self._plain(400, "bad content length\n")
            return
        if length > self.config.max_request_size:
            self._plain(
                413, f"content length too large ({length}>{self.config.max_request_size})\n"
            )
            self.close_connection = True
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in (
            "application/json",
            "application/json-rpc",
            "application/jsonrequest",
        ):
            self.rfile.read(length)
            self._plain(415, "invalid content type, only application/json is supported\n")
            return
        body = self.rfile.read(length)
        context = self.server.rpc.context
        context.requests_in_flight.add(1)
        try:
            response = self.server.rpc.dispatcher.handle_body(body)
        finally:
            context.requests_in_flight.add(-1)
        self._json(response or b"")

    def _host_allowed(self) -> bool:
        vhosts = self.config.vhosts
        if "*" in vhosts:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if not host:
            return True
        try:
            ipaddress.ip_address(host)
            return True  # geth lets requests addressed by IP through
        except ValueError:
            return host.lower() in (v.lower() for v in vhosts)

    def _cors_headers(self) -> None:
        origin = self.headers.get("Origin")
        domains = self.config.cors_domains
        if origin and domains and ("*" in domains or origin in domains):
            self.send_header("Access-Control-Allow-Origin", "*" if "*" in domains else origin)
            self.send_header("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.send_header("Vary", "Origin")

    def _json(self, body: bytes) -> None:
        accepts_gzip = "gzip" in (self.headers.get("Accept-Encoding") or "").lower()
        compress = accepts_gzip and len(body) >= GZIP_MIN_SIZE
        if compress:
            body = gzip.compress(body, compresslevel=5)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if compress:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self._cors_headers()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self._cors_headers()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
