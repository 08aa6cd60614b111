"""The grpc.aio server: options, interceptors, services, health and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass
from typing import Final

from grpc import aio
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.dispatch import Publisher
from foundation import tracing
from foundation.hooks import HookChain
from foundation.settings import Settings
from service import offload
from service.executions.service import ExecutionService
from service.interceptors import (
    DecodeGuardInterceptor,
    ErrorInterceptor,
    RequestIdInterceptor,
    details_budget,
)
from service.interceptors.deadline import DeadlineInterceptor
from service.interceptors.metrics import MetricsInterceptor
from service.interceptors.tracing import TracingInterceptor
from service.notifications.projector import NotificationProjector
from service.pagination import PageTokens, signing_key
from service.readiness import Readiness
from service.servicers.event import EventServicer
from service.servicers.execution import ExecutionServicer
from service.servicers.notification import NotificationServicer
from service.servicers.tenant import TenantServicer
from service.servicers.workflow import WorkflowServicer
from service.streams.hub import EventHub
from tenancy.database import TenantDatabase
from tenancy.interceptor import AuthInterceptor
from tenancy.tokens import TokenVerifier
from wfe.v1 import (
    event_pb2,
    execution_pb2,
    execution_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    tenant_pb2,
    tenant_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    tenant_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
    workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
    event_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    notification_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
)

SWITCH_INTERVAL_SECONDS: Final = 0.0005
"""How long another thread of the server (the workers' feeder, the task publisher) may keep the
GIL once the event loop asks for it back (Python's default is 5 ms). The loop gives the GIL up at
every database call, so on a busy server a long slice would add to every call of every tenant."""

OFFLOADED = (
    "engine.control",
    "service.interceptors.text",
    "service.servicers.values",
    "service.servicers.workflow",
    "service.workflows.validation",
)
"""Modules whose functions run in `offload`'s workers: imported there as the server starts."""


@dataclass
class RunningServer:
    server: aio.Server
    port: int
    health: health.aio.HealthServicer
    hub: EventHub
    notifier: NotificationProjector
    readiness: Readiness

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, end event streams with UNAVAILABLE (their clients resume
        elsewhere), then let other in-flight calls finish for up to `grace` seconds."""
        await self.readiness.stop()
        await self.health.enter_graceful_shutdown()
        self.hub.close()
        await self.server.stop(grace)
        await self.notifier.stop()
        await self.hub.stop()


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_metadata_size", settings.grpc_max_metadata_bytes),
        ("grpc.keepalive_time_ms", settings.grpc_keepalive_time_seconds * 1000),
        ("grpc.keepalive_timeout_ms", settings.grpc_keepalive_timeout_seconds * 1000),
        # What grpc core now waits for a ping's ack (keepalive's included) before it closes
        # the connection; left alone it is a minute, whatever the keepalive timeout says.
        ("grpc.http2.ping_timeout_ms", settings.grpc_keepalive_timeout_seconds * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            settings.grpc_min_client_ping_seconds * 1000,
        ),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 0),
    ]


async def start_server(
    settings: Settings,
    database: TenantDatabase,
    verifier: TokenVerifier,
    publisher: Publisher,
    *,
    address: str | None = None,
) -> RunningServer:
    """Build and start the server on `address` (default: the settings'); port 0 picks one.

    `publisher` sends the step tasks that calls make due to the workers.
    """
    server = aio.server(
        interceptors=[
            HookChain(
                MetricsInterceptor(),
                *([TracingInterceptor()] if tracing.enabled() else []),
                RequestIdInterceptor(),
                ErrorInterceptor(
                    max_violations=settings.error_max_violations,
                    budget=details_budget(settings.grpc_max_metadata_bytes),
                ),
                DeadlineInterceptor(),
                AuthInterceptor(verifier),
            ),
            DecodeGuardInterceptor(),  # innermost: sees the deserializer gRPC will call
        ],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    tokens = PageTokens(signing_key(settings))
    answers = settings.grpc_max_message_bytes
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    offload.configure(
        settings.validation_workers, settings.validation_timeout_seconds, preload=OFFLOADED
    )
    offload.start()
    hub = EventHub(
        database,
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        buffer_events=settings.stream_buffer_events,
        poll_seconds=settings.event_poll_seconds,
    )
    tenant_pb2_grpc.add_TenantServiceServicer_to_server(TenantServicer(database), server)
    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
        WorkflowServicer(database, tokens, answers), server
    )
    execution_pb2_grpc.add_ExecutionServiceServicer_to_server(
        ExecutionServicer(ExecutionService(database, settings, publisher), tokens, answers, hub),
        server,
    )
    EventServicer(hub).add_to(server)
    notification_pb2_grpc.add_NotificationServiceServicer_to_server(
        NotificationServicer(database, tokens), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address or settings.listen_address)
    if port == 0:
        raise OSError(f"cannot bind {address or settings.listen_address}")
    notifier = NotificationProjector(
        database,
        slow_step_seconds=settings.slow_step_seconds,
        slow_step_factor=settings.slow_step_factor,
        poll_seconds=settings.event_poll_seconds,
        final=lambda: hub.position,
    )
    await hub.start()
    await notifier.start()
    hub.followers.append(notifier.wake)
    await server.start()
    readiness = Readiness(
        database, health_servicer, (*SERVICE_NAMES, ""), settings.readiness_check_seconds
    )
    await readiness.update()
    readiness.start()
    return RunningServer(server, port, health_servicer, hub, notifier, readiness)


async def run_until_signalled(running: RunningServer, grace: float) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutting down: draining for up to %.1f s", grace)
    await running.stop(grace)
    logger.info("stopped")
