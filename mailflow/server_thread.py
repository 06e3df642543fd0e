"""A standard-library HTTP server served from a thread of its own: the
archive's and the monitor's, started and stopped with the service."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

# How often the serving thread looks whether stop() was called: the
# standard library's 0.5 s made every stop of `mailflow run` (and of each
# test's service) wait that long.
STOP_POLL_SECONDS = 0.05


class ServerThread:
    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self._server = server
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(STOP_POLL_SECONDS,), name=name, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
