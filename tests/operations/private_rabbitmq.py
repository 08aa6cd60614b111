"""A RabbitMQ node of one test's own, with a consumer timeout of seconds instead of minutes.

Before RabbitMQ 3.11.15 the consumer timeout is a node-wide setting (no `x-consumer-timeout`
argument), and the node checks it once per channel tick (a minute by default): a shared
broker's is not ours to change. The node here runs as the current user from the package's
own script (Debian's `/usr/sbin/rabbitmq-server` switches to the `rabbitmq` user), with its
data, logs, cookie and configuration in a fresh directory, on free ports of 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.fault_harness import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_PATIENCE = 90.0
"""Seconds for the node to boot: about 5 on a quiet machine, several times that on a busy one."""


def unavailable_reason() -> str | None:
    """Why a private node cannot be started here (None: it can)."""
    return None if SERVER.exists() else f"RabbitMQ's server script not found at {SERVER}"


@contextmanager
def private_rabbitmq(directory: Path, consumer_timeout_ms: int) -> Iterator[str]:
    """Start a node that closes a channel holding a message unacknowledged past
    `consumer_timeout_ms` (checked every second); its AMQP URL. Stopped on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    advanced = directory / "advanced.config"
    advanced.write_text(
        f"[{{rabbit, [{{consumer_timeout, {consumer_timeout_ms}}},"
        " {channel_tick_interval, 1000}]}].\n"
    )
    (directory / "enabled_plugins").write_text("[].\n")
    environment = {
        **os.environ,
        "HOME": str(directory),  # the Erlang cookie
        "RABBITMQ_NODENAME": f"wfe-test-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_PID_FILE": str(directory / "pid"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(advanced),
        "RABBITMQ_CONFIG_FILE": str(directory / "no-rabbitmq"),
        "RABBITMQ_CONF_ENV_FILE": str(directory / "no-rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
    }
    with open(directory / "rabbitmq.log", "wb") as log:
        node = subprocess.Popen(
            [str(SERVER)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_port(port, node, directory)
        yield f"amqp://guest:guest@127.0.0.1:{port}//"
    finally:
        with suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)  # the Erlang VM stops cleanly on SIGTERM
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)


def _wait_for_port(port: int, node: subprocess.Popen[bytes], directory: Path) -> None:
    ends = time.monotonic() + START_PATIENCE
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if node.poll() is not None or time.monotonic() > ends:
            tail = (directory / "rabbitmq.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the private RabbitMQ node did not start on {port}:\n{tail}")
        time.sleep(0.1)
