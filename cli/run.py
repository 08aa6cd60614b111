"""The commands that run the service: serve, dev, gateway, migrate, worker, beat.

Each loads what it runs (`cli.processes`, `cli.web`, `cli.schema`) only once invoked, so declaring
them costs `wfe --help` nothing.
"""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

import typer

ListenAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="host:port to listen on; default: WFE_LISTEN_ADDRESS, else 127.0.0.1:50051",
    ),
]


GatewayAddress = Annotated[
    str | None,
    typer.Option(
        "--gateway-address",
        help="host:port of the REST gateway; default: WFE_GATEWAY_LISTEN_ADDRESS, "
        "else 127.0.0.1:8080",
    ),
]


def serve(address: ListenAddress = None) -> None:
    """Run the gRPC service as configured by WFE_* variables."""
    from cli import processes

    processes.serve(address)


def dev(address: ListenAddress = None, gateway_address: GatewayAddress = None) -> None:
    """Run everything embedded: SQLite file, migrations, demo tenants, dev tokens, the
    engine with an in-process worker (no broker or database server needed) and the REST
    gateway."""
    from cli import processes

    processes.dev(address, gateway_address)


def gateway(
    address: Annotated[
        str | None,
        typer.Option(
            help="host:port to listen on; default: WFE_GATEWAY_LISTEN_ADDRESS, else 127.0.0.1:8080"
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="host:port of the gRPC server; default: WFE_GATEWAY_TARGET, else 127.0.0.1:50051"
        ),
    ] = None,
) -> None:
    """Run the REST gateway: seed 004's HTTP API for frontends, as calls to a gRPC server."""
    from cli import web

    web.serve(address, target)


def migrate() -> None:
    """Apply database migrations as the owner role and grant the service role."""
    from cli import config, schema

    schema.migrate(config.load())
    typer.echo("database is at the latest schema")


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="step tasks at once (default WFE_WORKER_CONCURRENCY)")
    ] = None,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo")] = "prefork",
    name: Annotated[str, typer.Option(help="worker node name")] = "wfe@%h",
) -> None:
    """Run a Celery worker that executes step tasks from WFE_BROKER_URL."""
    _share_worker_metrics()
    from cli import processes

    processes.worker(concurrency, pool, name)


def worker_ping(
    name: Annotated[str, typer.Option(help="the worker's node name, as given to `wfe worker`")] = (
        "wfe@%h"
    ),
    timeout: Annotated[float, typer.Option(help="seconds to wait for its answer")] = 5.0,
) -> None:
    """Ask a worker, over the broker, whether it is alive (a liveness probe): exit 0 if it
    answers, 1 if not."""
    from cli import processes

    processes.worker_ping(name, timeout)


def beat() -> None:
    """Run the periodic jobs: the sweeper (re-publishes overdue steps) and the history purge."""
    from cli import processes

    processes.beat()


def _share_worker_metrics() -> None:
    """The worker's forked task processes write their samples to files that its metrics
    endpoint adds up. The Prometheus client picks that mode as it is imported, so this runs
    before anything imports it."""
    if os.environ.get("WFE_METRICS_ADDRESS"):
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="wfe-metrics-"))
