"""One `wfe dev` for every CLI test here: started once, driven through the `wfe` command."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.test_cli import WFE, free_port, run_wfe, wait_for_health

BANNER_END = "Switch tenants with:"


def fields(text: str) -> dict[str, str]:
    """The `name: value` lines a detail view prints, up to its first blank line."""
    head = text.split("\n\n", 1)[0]
    return dict(tuple(part.strip() for part in line.split(":", 1)) for line in head.splitlines())


@dataclass
class LiveDev:
    """A running `wfe dev`: where it listens, what it printed, and a way to call it."""

    address: str
    env: dict[str, str]  # the caller's environment without WFE_*, plus the server's data dir
    refusing_url: str  # steps may call it; nothing listens there, so every call fails
    lines: list[str] = field(default_factory=list)

    @property
    def exports(self) -> dict[str, str]:
        """Each demo tenant's `export` line, as printed."""
        found = {}
        for line in self.lines:
            if line.startswith("export "):
                found[self.variables(line)["WFE_TENANT"]] = line.strip()
        return found

    @staticmethod
    def variables(line: str) -> dict[str, str]:
        return dict(part.split("=", 1) for part in shlex.split(line)[1:])

    def as_tenant(self, tenant: str) -> dict[str, str]:
        return {**self.env, **self.variables(self.exports[tenant])}

    def wfe(self, *args: str, tenant: str = "demo-pro") -> subprocess.CompletedProcess[str]:
        """`wfe ARGS` with the environment the tenant's pasted line sets."""
        return run_wfe(self.as_tenant(tenant), *args)


@pytest.fixture(scope="package")
def live_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDev]:
    home = tmp_path_factory.mktemp("live-dev")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(WFE_DATA_DIR=str(home / "data"), WFE_BROKER_URL="redis://127.0.0.1:9/0")
    closed = free_port()
    server_env = {
        **env,
        "WFE_HTTP_ALLOWED_NETWORKS": "127.0.0.1/32",
        "WFE_HTTP_ALLOWED_PORTS": str(closed),
        "WFE_SHUTDOWN_GRACE_SECONDS": "1",
        "WFE_GATEWAY_LISTEN_ADDRESS": "127.0.0.1:0",  # dev's gateway: any free port
    }
    live = LiveDev(f"127.0.0.1:{free_port()}", env, f"http://127.0.0.1:{closed}/")
    banner = threading.Event()
    with (home / "stderr").open("w") as errors:
        process = subprocess.Popen(
            [*WFE, "dev", "--address", live.address],
            env=server_env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            live.lines.append(line)
            if line.startswith(BANNER_END):
                banner.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def output() -> str:
        return "".join(live.lines) + Path(home / "stderr").read_text()

    try:
        wait_for_health(live.address, process, output)
        assert banner.wait(30), output()
        yield live
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        reader.join(5)
        if process.stdout:
            process.stdout.close()
