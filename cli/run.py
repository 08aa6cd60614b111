"""The commands that run the service: serve, dev, migrate, worker, beat.

Each loads what it runs (`cli.processes`, `cli.schema`) only once invoked, so declaring
them costs `wfe --help` nothing.
"""

from __future__ import annotations

from typing import Annotated

import typer

ListenAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="host:port to listen on; default: WFE_LISTEN_ADDRESS, else 127.0.0.1:50051",
    ),
]


def serve(address: ListenAddress = None) -> None:
    """Run the gRPC service as configured by WFE_* variables."""
    from cli import processes

    processes.serve(address)


def dev(address: ListenAddress = None) -> None:
    """Run everything embedded: SQLite file, migrations, demo tenants, dev tokens, and the
    engine with an in-process worker (no broker or database server needed)."""
    from cli import processes

    processes.dev(address)


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
    from cli import processes

    processes.worker(concurrency, pool, name)


def beat() -> None:
    """Run the periodic jobs: the sweeper (re-publishes overdue steps) and the history purge."""
    from cli import processes

    processes.beat()
