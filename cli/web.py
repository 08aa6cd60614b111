"""The REST gateway's process: uvicorn serving `gateway.create_app`, alone or inside `wfe dev`.

Both run uvicorn's server on an event loop of ours, which handles the signals: one worker, the
ASGI lifespan on, proxy headers off (the gateway trusts no `X-Forwarded-*`). `wfe gateway` runs
it alone until SIGTERM or SIGINT, then lets open requests end; `wfe dev` starts it beside the
gRPC server and stops it with the server.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import typer
import uvicorn
from starlette.applications import Starlette
from uvicorn.config import LOGGING_CONFIG

from cli import config, ports
from cli.shell import client_address
from foundation import metrics
from foundation.settings import GatewaySettings
from gateway import create_app, health, pages

FLAG = "--gateway-address"
VARIABLE = "WFE_GATEWAY_LISTEN_ADDRESS"
GRACE_SECONDS = 10.0  # `wfe gateway` lets open requests end this long after SIGTERM

GATEWAY_PLACES: Final = "live page at /, REST under /api, docs at /api/docs"
"""Where a person finds what the gateway serves, as `wfe dev` and `wfe gateway` print it."""


def serve(address: str | None, target: str | None) -> None:
    """`wfe gateway`: the gateway alone, until SIGTERM or SIGINT."""
    overrides: dict[str, Any] = {}
    if address:
        overrides["gateway_listen_address"] = address
    if target:
        overrides["gateway_target"] = target
    settings = config.load_gateway(**overrides)
    ports.refuse_if_in_use(settings.gateway_listen_address, variable=VARIABLE)
    if settings.metrics_address:
        port = metrics.serve(settings.metrics_address)
        typer.echo(f"metrics on {settings.metrics_address.rsplit(':', 1)[0]}:{port}/metrics")
    asyncio.run(_serve_alone(settings))


async def _serve_alone(settings: GatewaySettings) -> None:
    access_lines: dict[str, Any] | None = LOGGING_CONFIG
    if settings.log_format == "json":  # the process's own lines, as JSON; no access lines
        from service import logs

        logs.configure(settings.log_level, "json")
        access_lines = None
    running = await start(
        settings, settings.gateway_target, GRACE_SECONDS, flag="--address", logs=access_lines
    )
    typer.echo(
        f"gateway listening on {running.url} ({GATEWAY_PLACES}), calling {settings.gateway_target}"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()


def refuse_if_in_use(settings: GatewaySettings) -> None:
    """Before `wfe dev` does any work: stop if the gateway's port is taken."""
    ports.refuse_if_in_use(settings.gateway_listen_address, flag=FLAG, variable=VARIABLE)


class _InLoop(uvicorn.Server):
    """uvicorn inside a loop whose owner handles the signals: it stops when told to."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningGateway:
    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str

    async def stop(self) -> None:
        """Stop accepting, let open requests end (streams end with the server), shut down."""
        self.server.should_exit = True
        await self.task
        await self.server.shutdown()


async def start(
    settings: GatewaySettings,
    target: str,
    grace: float,
    *,
    flag: str = FLAG,
    logs: dict[str, Any] | None = None,
) -> RunningGateway:
    """The gateway for the server at `target`, on the running loop; returns once it listens.

    `logs`: uvicorn's logging configuration, with access lines; None keeps the process's
    logging as configured (`wfe dev`'s), without them.
    """
    address = settings.gateway_listen_address
    host, port = _host_and_port(address, flag)
    server = _InLoop(
        uvicorn.Config(
            _app(settings, target),
            host=host,
            port=port,
            lifespan="on",
            proxy_headers=False,
            server_header=False,
            log_config=logs,
            access_log=logs is not None,
            timeout_graceful_shutdown=max(1, round(grace)),
        )
    )
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)
    try:
        await server.startup()
    except SystemExit:  # uvicorn's answer to a failed bind or lifespan
        ports.refuse(address, "cannot be bound", flag=flag, variable=VARIABLE)
    bound = server.servers[0].sockets[0].getsockname()[1]
    task = asyncio.create_task(server.main_loop(), name="wfe-gateway")
    return RunningGateway(server, task, f"http://{client_address(address, bound)}")


def _app(settings: GatewaySettings, target: str) -> Starlette:
    return create_app(
        target,
        cors_origins=settings.gateway_cors_origins,
        routes=[*health.routes(), *pages.routes()],
        max_body_bytes=settings.gateway_max_body_bytes,
    )


def _host_and_port(address: str, flag: str) -> tuple[str, int]:
    parts = ports.split(address)
    if parts is None:
        raise typer.BadParameter(f"{address!r} is not host:port", param_hint=flag)
    return parts
