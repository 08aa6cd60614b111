"""The engine the integration tests run against: embedded, or real workers on a real broker.

On SQLite the engine runs in-process exactly as `wfe dev` runs it. On PostgreSQL it
runs as in production: `wfe worker` and `wfe beat` processes on Redis (or the
broker in WFE_TEST_BROKER_URL), with a queue name of its own so parallel runs on
one broker never take each other's tasks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from engine.dispatch import Publisher
from foundation.settings import Settings
from workers.app import create_app
from workers.publisher import BackgroundPublisher, CeleryPublisher

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
# Short clocks so recovery paths show within a test's patience.
ENGINE_SETTINGS: dict[str, Any] = {
    "lease_seconds": 2.0,
    "dispatch_grace_seconds": 1.0,
    "sweep_interval_seconds": 0.5,
    "purge_interval_seconds": 3600.0,
    "worker_concurrency": 2,
    "http_allowed_networks": ("127.0.0.0/8",),
}


def broker_url() -> str:
    return os.environ.get("WFE_TEST_BROKER_URL", DEFAULT_BROKER_URL)


def broker_unavailable_reason(url: str) -> str | None:
    if url.startswith("redis"):
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.RedisError as error:
            return f"Redis at {url} unreachable: {error}"
        return None
    import kombu

    try:
        with kombu.Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        return f"broker at {url} unreachable: {error}"
    return None


def worker_environment(
    database_url: str, broker: str, queue: str, data_dir: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(
        WFE_DATABASE_URL=database_url,
        WFE_BROKER_URL=broker,
        WFE_QUEUE_NAME=queue,
        WFE_DATA_DIR=str(data_dir),
        WFE_LOG_LEVEL="WARNING",
    )
    for name, value in ENGINE_SETTINGS.items():
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        env[f"WFE_{name.upper()}"] = text
    return env


@dataclass
class Processes:
    """`wfe worker` / `wfe beat` processes started for a run; killed and reaped at the end."""

    env: dict[str, str]
    log_dir: Path
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    def start(self, command: str, *args: str) -> subprocess.Popen[bytes]:
        self.started += 1
        with open(self.log_dir / f"{command}-{self.started}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", command, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append(process)
        return process

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start("worker", *args)

    def beat(self) -> subprocess.Popen[bytes]:
        return self.start("beat")

    @staticmethod
    def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the process and everything it started (prefork children too)."""
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(10)

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.running:
            with suppress(subprocess.TimeoutExpired):
                process.wait(max(deadline - time.monotonic(), 0.1))
            if process.poll() is None:
                self.kill(process)
        self.running.clear()


def wait_for_workers(app: Any, names: list[str], patience: float = 90.0) -> None:
    """Block until the named workers answer a ping, so tests never time the workers' start.

    Other runs' workers may share the broker; only replies from these names count.
    """
    ends = time.monotonic() + patience
    while time.monotonic() < ends:
        replies = app.control.ping(timeout=1.0) or []
        answered = {node.split("@", 1)[0] for reply in replies for node in reply}
        if answered >= set(names):
            return
    raise RuntimeError(f"workers {names} did not start within {patience}s")


def purge_queue(url: str, queue: str) -> None:
    """Drop what a run left on the broker under its own queue name."""
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{queue}*"))
        if keys:
            client.delete(*keys)


@contextmanager
def broker_engine(
    settings: Settings, database_url: str, data_dir: Path, *, workers: int = 1, beat: bool = True
) -> Iterator[tuple[Publisher, Processes]]:
    """Real worker processes (and beat) on the broker of `settings`, and a server publisher."""
    env = worker_environment(database_url, settings.broker_url, settings.queue_name, data_dir)
    env["WFE_HTTP_ALLOWED_PORTS"] = ",".join(map(str, sorted(settings.http_allowed_ports)))
    data_dir.mkdir(parents=True, exist_ok=True)
    processes = Processes(env, data_dir)
    app = create_app(settings)
    publisher = BackgroundPublisher(CeleryPublisher(app))
    try:
        names = [f"{settings.queue_name}-{n}" for n in range(workers)]
        for name in names:
            processes.worker(f"--name={name}@%h")
        if beat:
            processes.beat()
        wait_for_workers(app, names)
        yield publisher, processes
    finally:
        publisher.close()
        processes.stop_all()
        purge_queue(settings.broker_url, settings.queue_name)


def unique_queue() -> str:
    return f"wfe-test-{uuid.uuid4().hex[:10]}"
