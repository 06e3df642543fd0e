"""``[monitor].http_port``: ``/healthz`` and ``/metrics`` for `mailflow run`.

The standard library's threading HTTP server, as the archive's; on
loopback by default, for the host's own scraper and load balancer. It
only reads: a request never changes the spool or the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from mailflow.monitor.metrics import CONTENT_TYPE, Metrics
from mailflow.server_thread import ServerThread

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    health: Callable[[], dict[str, str]]
    metrics: Metrics
    timeout = 30

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._health()
        elif path == "/metrics":
            self._metrics()
        else:
            self.send_error(404)

    def _metrics(self) -> None:
        try:
            body = self.metrics.exposition()
        except Exception as exc:  # the database is down: /healthz says so
            log.warning("metrics not read: %s", exc)
            self._send(503, "text/plain; charset=utf-8", f"{exc}\n".encode())
            return
        self._send(200, CONTENT_TYPE, body)

    def _health(self) -> None:
        parts = self.health()
        failing = any(value != "ok" for value in parts.values())
        body = {"status": "failing" if failing else "ok", **parts}
        self._send(
            503 if failing else 200,
            "application/json",
            json.dumps(body).encode() + b"\n",
        )

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class MonitorServer(ServerThread):
    def __init__(
        self, host: str, port: int, health: Callable[[], dict[str, str]], metrics: Metrics
    ) -> None:
        handler = type("Handler", (_Handler,), {"health": staticmethod(health), "metrics": metrics})
        super().__init__(ThreadingHTTPServer((host, port), handler), "monitor-http")
