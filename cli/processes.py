"""The processes `wfe` runs: the server (alone, or with the engine embedded), workers, beat.

This is where the service, engine, workers and SQLAlchemy come together, so only the
commands that run one of them load it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import typer
from pydantic import SecretStr

from cli import admin, config, ports, schema, web
from cli.demo import DEMO_TENANTS, TOKEN_HOURS, banner
from cli.shell import client_address
from cli.tokens import mint
from foundation import metrics, tracing
from foundation.settings import GatewaySettings, Settings
from service import logs, offload
from service.server import RunningServer, run_until_signalled, start_server
from tenancy.database import TenantDatabase
from tenancy.dev_tokens import dev_secret
from tenancy.verifiers import verifier_for
from workers.app import create_app, io_queue
from workers.embedded import EmbeddedEngine
from workers.publisher import BackgroundPublisher, CeleryPublisher

REFUSED = ports.REFUSED


def observe(settings: Settings, role: str) -> None:
    """Logs in the configured format; the metrics endpoint, when an address is set; traces,
    when the `OTEL_*` variables ask for them (the service called `wfe-<role>`)."""
    logs.configure(settings.log_level, settings.log_format)
    try:
        tracing.configure(f"wfe-{role}")
    except tracing.TracingSettingError as refused:
        typer.echo(str(refused), err=True)
        raise typer.Exit(REFUSED) from None
    metrics.configure(tenant_labels=settings.metrics_tenant_labels)
    if settings.metrics_address:
        port = metrics.serve(settings.metrics_address)
        typer.echo(f"metrics on {settings.metrics_address.rsplit(':', 1)[0]}:{port}/metrics")


def _listening_on(address: str | None) -> dict[str, Any]:
    """The settings override a command-line address makes (it wins over WFE_LISTEN_ADDRESS)."""
    return {"listen_address": address} if address else {}


def refuse_unsafe_role(settings: Settings) -> None:
    """Stop before serving if the database role would slip past row-level security."""
    from persistence import preflight  # loads Alembic, which a warm `wfe dev` never needs

    defects = preflight.role_defects(settings.effective_database_url)
    for defect in defects:
        typer.echo(defect.message, err=True)
    if defects:
        raise typer.Exit(REFUSED)


def serve(address: str | None) -> None:
    """The service alone: its engine runs in `wfe worker` processes behind a broker."""
    settings = config.load(**_listening_on(address))
    ports.refuse_if_in_use(settings.listen_address)
    refuse_unsafe_role(settings)
    observe(settings, "server")
    asyncio.run(_serve(settings, lambda running, _: _announce(settings, running)))


def dev(address: str | None, gateway_address: str | None = None) -> None:
    """Everything in this process, the REST gateway included; once listening, the lines that
    let a shell use it."""
    base = config.load(**_listening_on(address))
    ports.refuse_if_in_use(base.listen_address)
    gateway = config.load_gateway(
        **({"gateway_listen_address": gateway_address} if gateway_address else {})
    )
    web.refuse_if_in_use(gateway)
    secret = base.jwt_secret or SecretStr(dev_secret(base.data_dir))
    settings = config.load(listen_address=base.listen_address, jwt_secret=secret, jwt_jwks_url=None)
    observe(settings, "dev")
    schema.migrate_unless_current(settings)
    asyncio.run(admin.run(settings, lambda session: admin.ensure(session, DEMO_TENANTS)))

    def announce(running: RunningServer, gateway_url: str | None) -> None:
        _announce(settings, running)
        typer.echo(f"gateway listening on {gateway_url} ({web.GATEWAY_PLACES})")
        tokens = {
            tenant_id: mint(settings, [tenant_id], ["admin"], TOKEN_HOURS * 3600)
            for tenant_id, _, _ in DEMO_TENANTS
        }
        reach = client_address(settings.listen_address, running.port)
        typer.echo(banner(reach, settings.effective_database_url, tokens))

    asyncio.run(_serve(settings, announce, embedded=True, gateway=gateway))


def _announce(settings: Settings, running: RunningServer) -> None:
    typer.echo(f"wfe listening on {settings.listen_address.rsplit(':', 1)[0]}:{running.port}")


async def _serve(
    settings: Settings,
    listening: Callable[[RunningServer, str | None], None],
    *,
    embedded: bool = False,
    gateway: GatewaySettings | None = None,
) -> None:
    """Serve until signalled; `embedded` also runs the engine here on an in-memory broker,
    and `gateway` the REST gateway, calling this server."""
    database = TenantDatabase(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    local = EmbeddedEngine(settings, database) if embedded else None
    publisher = (
        local.publisher if local else BackgroundPublisher(CeleryPublisher(create_app(settings)))
    )
    rest: web.RunningGateway | None = None
    try:
        if local is not None:
            await local.start()
        try:
            running = await start_server(settings, database, verifier_for(settings), publisher)
        except (OSError, RuntimeError) as error:  # taken since the check, or not ours to bind
            ports.refuse(settings.listen_address, f"cannot be bound ({error})")
        if gateway is not None:
            target = client_address(settings.listen_address, running.port)
            rest = await web.start(gateway, target, settings.shutdown_grace_seconds)
        listening(running, rest.url if rest else None)
        await run_until_signalled(running, settings.shutdown_grace_seconds)
    finally:
        if rest is not None:
            await rest.stop()
        offload.shutdown(now=True)
        if local is not None:
            await local.stop()
        await database.dispose()
        tracing.flush()


def worker(concurrency: int | None, pool: str, name: str) -> None:
    settings = config.load()
    refuse_unsafe_role(settings)
    observe(settings, "worker")
    celery = create_app(settings)
    queues = [settings.queue_name]
    if settings.worker_io_steps == 0:
        queues.append(io_queue(settings.queue_name))  # no lane: its steps run in tasks
    elif pool != "prefork":
        # Prefork processes take the I/O lane as they start; the other pools run tasks in
        # this process, which takes it itself.
        from celery.signals import worker_ready, worker_shutdown

        from workers.tasks import leave_io_lane, take_io_lane

        worker_ready.connect(take_io_lane, weak=False)
        worker_shutdown.connect(leave_io_lane, weak=False)
    celery.worker_main(
        [
            "worker",
            f"--queues={','.join(queues)}",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--pool={pool}",
            f"--hostname={name}",
            f"--loglevel={settings.log_level}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


def beat() -> None:
    settings = config.load()
    refuse_unsafe_role(settings)
    observe(settings, "beat")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery = create_app(settings)
    if settings.metrics_address:
        from workers import gauges

        gauges.install(celery)
    celery.Beat(
        schedule=str(settings.data_dir / "beat-schedule"),
        loglevel=settings.log_level,
        max_interval=min(settings.sweep_interval_seconds, 5.0),
    ).run()


def worker_ping(name: str, timeout: float) -> None:
    """Exit 0 if the worker `name` answers a ping over the broker within `timeout` seconds."""
    from celery.utils.nodenames import host_format

    settings = config.load()
    node = host_format(name)
    replies = create_app(settings).control.ping(destination=[node], timeout=timeout)
    if not any(node in reply for reply in replies or ()):
        typer.echo(f"worker {node} did not answer within {timeout:g} s", err=True)
        raise typer.Exit(1)
    typer.echo(f"worker {node} answered")
