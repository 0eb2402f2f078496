"""The status page's HTTP server: ``/`` the page (one static file shipped in the package, no external scripts, fonts
or CDNs), ``/status.json`` the runtime's snapshot. Bound to loopback unless configured otherwise; with a token file,
every request must carry the token (``?token=...`` or ``Authorization: Bearer ...``).
"""

from __future__ import annotations

import hmac
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from edge_runtime.contract.errors import ConfigError
from edge_runtime.status.snapshot import StatusSnapshot

log = logging.getLogger("linewatch.status")
PAGE = files("edge_runtime.status") / "page.html"


class StatusServer:
    """Serves one runtime's status page on ``host:port`` from a daemon thread."""

    def __init__(self, snapshot: StatusSnapshot, host: str, port: int, token: str | None = None) -> None:
        self.snapshot, self.token = snapshot, token
        self.page = PAGE.read_bytes()
        self.refused = 0
        handler = type("Handler", (StatusHandler,), {"server_state": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise ConfigError(f"runtime.status_port: cannot listen on {host}:{port}: {error.strerror}") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="linewatch-status", daemon=True)

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def allowed(self, path: str, authorization: str | None) -> bool:
        """Whether a request may see the page: always without a token, else only with the token."""
        if self.token is None:
            return True
        given = parse_qs(urlsplit(path).query).get("token", [""])[0]
        if authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer "):]
        return hmac.compare_digest(given.encode(), self.token.encode())


class StatusHandler(BaseHTTPRequestHandler):
    """GET ``/`` and ``/status.json``; anything else is 404, a missing or wrong token 401."""

    server_state: StatusServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        """Answer one request."""
        state = self.server_state
        if not state.allowed(self.path, self.headers.get("Authorization")):
            state.refused += 1
            self._send(401, "text/plain; charset=utf-8", b"a token is needed: ?token=... or Authorization: Bearer ...\n")
            return
        route = urlsplit(self.path).path
        if route in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", state.page)
        elif route == "/status.json":
            self._send(200, "application/json", state.snapshot.json())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Requests are not logged (a page polled every second would fill the journal)."""
