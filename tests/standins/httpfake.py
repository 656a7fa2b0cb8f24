"""What the HTTPS stand-ins share: a threaded TLS server, JSON replies, and a log of every request.

Each request is appended to the stand-in's log (JSON lines: method, path, body, whether the
credentials were accepted, the status returned), so a test can check what the role asked for
and in which order. Certificates are self-signed, made with the openssl CLI (``make_cert``).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def make_cert(directory: str | Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate and key for ``host`` (as a BMC or Proxmox ships), in ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class JsonHandler(BaseHTTPRequestHandler):
    """Routes to ``self.server.app.handle(handler, method, path, body)``; the app returns
    (status, json-able body or None, extra headers)."""

    protocol_version = "HTTP/1.1"
    server_version = "grayctl-standin/1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the JSON log says it all
        pass

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        app = self.server.app  # type: ignore[attr-defined]
        try:
            status, body, headers = app.handle(self, method, self.path, raw)
        except Exception as err:  # noqa: BLE001 - a stand-in bug must show up as a 500, logged
            status, body, headers = 500, {"error": repr(err)}, {}
        data = b"" if body is None else json.dumps(body).encode()
        # Proxmox puts its error message in the status line, where clients show it
        reason = body.get("message") if isinstance(body, dict) and status >= 400 else None
        self.send_response(status, reason if isinstance(reason, str) else None)
        for k, v in headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)
        app.record({"method": method, "path": self.path, "body": _decode(raw, self.headers.get("Content-Type")),
                    "status": status})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


def _decode(raw: bytes, ctype: str | None) -> Any:
    if not raw:
        return None
    text = raw.decode(errors="replace")
    if ctype and "json" in ctype:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if ctype and "form" in ctype:
        from urllib.parse import parse_qs

        # the password never goes to the log
        return {k: ("***" if k == "password" else v[0]) for k, v in parse_qs(text).items()}
    return text


class App:
    """Base of a stand-in's application: a request log and a lock for its state."""

    def __init__(self, log: str | Path) -> None:
        self.log = Path(log)
        self.lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock, self.log.open("a") as fh:
            fh.write(json.dumps({"t": time.time(), **entry}) + "\n")

    def handle(self, h: JsonHandler, method: str, path: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError


def serve(app: App, host: str, port: int, cert: str | Path, key: str | Path) -> None:
    """Serve ``app`` over HTTPS until killed."""
    server = ThreadingHTTPServer((host, port), JsonHandler)
    server.daemon_threads = True
    server.app = app  # type: ignore[attr-defined]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
