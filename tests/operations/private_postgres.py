"""A PostgreSQL cluster of one test's own, to stop and start without touching the shared one.

`initdb` makes it in a fresh directory owned by the `postgres` OS user (the server refuses
to run as root), listening on a free port of 127.0.0.1 with its unix socket in that
directory and trust authentication. `throwaway_database` then makes the roles and the
database on it exactly as `tests.databases` does on the shared server, and migrates.
Durability is off (fsync, full page writes): a fast shutdown still writes everything
down, and nothing here needs to survive a power cut.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import psycopg

from tests.databases import ThrowawayDatabase, postgres_database
from tests.fault_harness import free_port

BINARIES = Path(os.environ.get("WFE_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be made here (None: it can)."""
    missing = [name for name in ("initdb", "pg_ctl") if not (BINARIES / name).exists()]
    if missing:
        return f"PostgreSQL binaries {missing} not in {BINARIES} (WFE_TEST_POSTGRES_BIN)"
    if shutil.which("runuser") is None:
        return "runuser not installed"
    try:
        import pwd

        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no {OS_USER!r} OS user to run PostgreSQL as"
    if os.geteuid() != 0:
        return "a private PostgreSQL is started through runuser, which needs root"
    return None


@dataclass
class PrivateCluster:
    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def url(self) -> str:
        """The superuser's URL, as `tests.databases` takes it (WFE_TEST_DATABASE_URL)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        done = subprocess.run(
            ["runuser", "-u", OS_USER, "--", str(BINARIES / command[0]), *command[1:]],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "--- postgres.log ---\n" + "\n".join(text)

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "logging_collector": "off",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("".join(f"{name} = {value}\n" for name, value in settings.items()))

    def start(self) -> None:
        """Start and wait until it accepts connections (`pg_ctl -w`)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop and wait until it is down: `fast` ends every session at once (a restart)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def accepts(self) -> bool:
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            ):
                return True
        except psycopg.OperationalError:
            return False


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A running cluster of its own; stopped and its directory removed on the way out."""
    directory = Path(tempfile.mkdtemp(prefix="wfe-pg-"))
    shutil.chown(directory, OS_USER, OS_USER)
    cluster = PrivateCluster(directory, free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                cluster.stop("immediate")
        if cluster.running():  # pg_ctl could not stop it: the postmaster itself, then
            pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
            with suppress(ProcessLookupError):
                os.kill(pid, 9)
            ends = time.monotonic() + 10
            while time.monotonic() < ends:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def throwaway_database(cluster: PrivateCluster) -> Iterator[ThrowawayDatabase]:
    """`tests.databases.postgres_database` on `cluster`: its two roles, its database, migrated.

    That helper reads the superuser's URL from WFE_TEST_DATABASE_URL once, on entry; the
    variable points at the cluster only for that moment.
    """
    made = postgres_database()
    with mock.patch.dict(os.environ, {"WFE_TEST_DATABASE_URL": cluster.url}):
        database = made.__enter__()
    try:
        yield database
    finally:
        if cluster.accepts():  # else the cluster goes with its directory anyway
            made.__exit__(None, None, None)
