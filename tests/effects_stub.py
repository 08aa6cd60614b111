"""An external system for engine tests: a real HTTP server that honours idempotency keys.

`POST /effects` applies an effect once per `Idempotency-Key` (a repeated key gets the
first answer again) and counts every delivery, so a test can tell "sent twice" from
"applied twice". Query parameters shape the answer:

* `fail_first=N`: the first N attempts of a step (keys `execution:step:*`) get 503;
* `status=S`: answer S instead of 200;
* `sleep=SECONDS`: wait before answering (a slow or hanging dependency);
* `hold=GATE`: wait until the test calls `release(GATE)` (at most a minute); `holding`
  counts the requests waiting at each gate.

The answer is JSON: the effect's `id` (null while failing), the key, the sequence
number of the effect and the request body echoed. `received` counts requests as they
arrive, `deliveries` as they are answered.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOLD_SECONDS = 60.0


@dataclass
class Effects:
    port: int
    deliveries: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    applied: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    holding: Counter[str] = field(default_factory=Counter)
    gates: dict[str, threading.Event] = field(default_factory=dict)
    bodies: dict[str, list[Any]] = field(default_factory=dict)
    """The JSON bodies received, by idempotency key, in order."""

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        self.gate(name).set()

    def url(self, **query: object) -> str:
        params = "&".join(f"{name}={value}" for name, value in query.items())
        return f"http://127.0.0.1:{self.port}/effects" + (f"?{params}" if params else "")

    def keys_of(self, execution_id: str) -> list[str]:
        with self.lock:
            return sorted(k for k in self.deliveries if k.startswith(execution_id + ":"))

    def bodies_of(self, execution_id: str) -> list[Any]:
        """The bodies an execution's steps sent, in key order."""
        with self.lock:
            return [
                body
                for key in sorted(self.bodies)
                if key.startswith(execution_id + ":")
                for body in self.bodies[key]
            ]

    def applied_count(self, execution_id: str, step_id: str) -> int:
        """How many distinct attempts of a step applied their effect."""
        with self.lock:
            return sum(1 for k in self.applied if k.startswith(f"{execution_id}:{step_id}:"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    effects: Effects

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, cancellation) hangs up on us: expected."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        key = self.headers.get("Idempotency-Key", "")
        effects = self.server.effects
        with effects.lock:
            effects.received[key] += 1
            effects.bodies.setdefault(key, []).append(json.loads(body) if body else None)
        if "sleep" in query:
            time.sleep(float(query["sleep"]))
        if "hold" in query:
            gate = effects.gate(query["hold"])
            with effects.lock:
                effects.holding[query["hold"]] += 1
            gate.wait(HOLD_SECONDS)
            with effects.lock:
                effects.holding[query["hold"]] -= 1
        with effects.lock:
            effects.deliveries[key] += 1
            step_prefix = key.rsplit(":", 1)[0] + ":"
            attempts_so_far = len({k for k in effects.deliveries if k.startswith(step_prefix)})
            failing = attempts_so_far <= int(query.get("fail_first", 0))
            if not failing and key not in effects.applied:
                effects.applied[key] = len(effects.applied) + 1
            sequence = effects.applied.get(key)
        status = 503 if failing else int(query.get("status", 200))
        payload = {
            "id": f"effect-{sequence}" if sequence else None,
            "key": key,
            "sequence": sequence,
            "echo": json.loads(body) if body else None,
        }
        encoded = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)


@contextmanager
def serve_effects() -> Iterator[Effects]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.effects = Effects(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.effects
    finally:
        server.shutdown()
        server.server_close()
