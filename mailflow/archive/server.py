"""Serve the archive folder over HTTP for `mailflow run` (``[archive].http_port``),
the one-click unsubscribe URL of the digests (``/unsubscribe/?s=...``) and
the private links to documents too large to attach (``/documents/TOKEN``).

The standard library's file server with the rules a public static site
needs: no folder listings, no dot files (the lock, half-written pages),
documents sent as downloads, and headers that keep a browser from running
anything the site did not ship itself. The nginx snippet in ``deploy/``
applies the same rules.
"""

from __future__ import annotations

import logging
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from mailflow.notify.outbox import FileAttachment
from mailflow.server_thread import ServerThread

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


class Unsubscriber(Protocol):
    """What the one-click unsubscribe URL needs from the rest of mailflow."""

    def unsubscribe_by_link(self, secret: str) -> str | None: ...

    def unsubscribe_page(self, outcome: str, secret: str) -> bytes: ...


class DocumentLinks(Protocol):
    """What a private document link needs from the rest of mailflow."""

    def document_by_link(self, secret: str) -> FileAttachment | None: ...


# A private document: a download only, never kept by a cache or named to
# another site, never run or shown inline.
DOCUMENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
DOCUMENTS_PATH = "/documents/"


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 (the library's own way to extend it)
        **SimpleHTTPRequestHandler.extensions_map,
        ".atom": "application/atom+xml; charset=utf-8",
        ".json": "application/json; charset=utf-8",
        ".html": "text/html; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".txt": "text/plain; charset=utf-8",
        ".svg": "image/svg+xml",
    }

    unsubscriber: Unsubscriber | None = None
    documents: DocumentLinks | None = None
    timeout = 30  # seconds a silent client may hold a thread

    def do_GET(self) -> None:
        if self._is_unsubscribe():
            # A GET never unsubscribes: mail scanners open links on their own.
            self._unsubscribe_page("ask")
            return
        if urlsplit(self.path).path.startswith(DOCUMENTS_PATH):
            self._send_document(urlsplit(self.path).path.removeprefix(DOCUMENTS_PATH))
            return
        super().do_GET()

    def _send_document(self, secret: str) -> None:
        """The document behind a private link; the same 404 for every link
        that does not open one, so a guess learns nothing."""
        document = None
        if self.documents is not None and secret.isalnum() and len(secret) <= 64:
            document = self.documents.document_by_link(secret)
        if document is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", document.content_type)
        self.send_header("Content-Length", str(len(document.content)))
        self.send_header("Content-Disposition", content_disposition(document.filename))
        for name, value in DOCUMENT_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()  # not the archive's: these headers are stricter
        self.wfile.write(document.content)

    def do_POST(self) -> None:
        """RFC 8058 one-click (``List-Unsubscribe=One-Click``), or the
        button of the page above."""
        if not self._is_unsubscribe() or self.unsubscriber is None:
            self.send_error(405)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        self.rfile.read(max(0, min(length, 4096)))  # the body says nothing we need
        left = self.unsubscriber.unsubscribe_by_link(self._secret())
        self._unsubscribe_page("done" if left else "unknown")

    def _is_unsubscribe(self) -> bool:
        return urlsplit(self.path).path.rstrip("/") == "/unsubscribe"

    def _secret(self) -> str:
        return parse_qs(urlsplit(self.path).query).get("s", [""])[0][:40]

    def _unsubscribe_page(self, outcome: str) -> None:
        if self.unsubscriber is None:
            self.send_error(404)
            return
        body = self.unsubscriber.unsubscribe_page(outcome, self._secret())
        self.send_response(404 if outcome == "unknown" else 200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def send_head(self) -> Any:
        if any(part.startswith(".") for part in self._parts()):
            self.send_error(404)
            return None
        return super().send_head()

    def _parts(self) -> tuple[str, ...]:
        """The path asked for, decoded and normalised as the file served
        (so "/%2elock" and "/cases//ID/x" are seen for what they are)."""
        served = Path(self.translate_path(self.path))
        try:
            return served.relative_to(self.directory).parts
        except ValueError:
            return (".",)

    def list_directory(self, path: Any) -> None:
        self.send_error(404)
        return None

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self._is_document():
            self.send_header("Content-Disposition", "attachment")
        super().end_headers()

    def _is_document(self) -> bool:
        parts = self._parts()
        return len(parts) == 3 and parts[0] == "cases" and parts[2] != "index.html"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def content_disposition(filename: str) -> str:
    """``attachment`` with the file's name: an ASCII stand-in for old
    clients and the exact name as RFC 6266 writes it; nothing in either
    can end the header or the quoted string."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._- ") else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class ArchiveServer(ServerThread):
    def __init__(
        self,
        folder: Path,
        host: str,
        port: int,
        unsubscriber: Unsubscriber | None = None,
        documents: DocumentLinks | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handler = type(
            "Handler", (_Handler,), {"unsubscriber": unsubscriber, "documents": documents}
        )
        server = ThreadingHTTPServer((host, port), partial(handler, directory=str(folder)))
        super().__init__(server, "archive-http")
