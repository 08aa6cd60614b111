"""A real HTTP(S) server on 127.0.0.1 for the `http_request` tests, run in a thread.

Routes: `/json`, `/echo` (the request as JSON), `/status/<code>`, `/redirect?to=&status=`,
`/loop` (redirects to itself), `/big?size=&declared=` and `/sleep`. Every request is
recorded, so a test can assert that a refused call never arrived.
"""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class LocalServer:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: LocalServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out or stop reading hang up on us; that is expected here."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on recorded requests instead."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        record = {
            "method": self.command,
            "path": self.path,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": body,
        }
        self.server.state.requests.append(record)
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        route = parts.path
        if route == "/json":
            self._send(200, {"hello": "world"}, extra={"X-Test": "yes"})
        elif route == "/echo":
            self._send(200, record)
        elif route.startswith("/status/"):
            self._send(int(route.rsplit("/", 1)[1]), {"error": "as asked"})
        elif route == "/redirect":
            self._send(int(query.get("status", "302")), None, extra={"Location": query["to"]})
        elif route == "/loop":
            self._send(302, None, extra={"Location": "/loop"})
        elif route == "/big":
            size = int(query["size"])
            declared = query.get("declared") == "1"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if declared:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            for _ in range(0, size, 1024):
                self.wfile.write(b"x" * 1024)
        elif route == "/sleep":
            self.server.state.release.wait(5)
            self._send(200, {"slept": True})
        else:
            self._send(404, {"error": "no route"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def _send(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[LocalServer]:
    """Serve on a free port of 127.0.0.1 until the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    state = LocalServer(port=server.server_address[1])
    server.state = state
    if tls is not None:
        tls.sni_callback = lambda _socket, name, _context: state.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def certificate_for(hostname: str, directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for `hostname`: the server's context and a client's trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client
