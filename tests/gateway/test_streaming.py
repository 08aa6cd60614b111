"""Streams as Server-Sent Events: a quiet stream starts at once, and a server going away ends it
with an `error` event holding the error body."""

from __future__ import annotations

import asyncio

import httpx

from engine.dispatch import Publisher
from service.server import start_server
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, NewTenant, server_settings
from tests.gateway.calls import Events
from tests.gateway.conftest import headers_for, started_gateway


async def test_a_quiet_stream_starts_and_ends_with_an_error_event_when_the_server_goes(
    database: TenantDatabase, engine: Publisher, new_tenant: NewTenant
) -> None:
    settings = server_settings(stream_heartbeat_seconds=300)  # nothing to send for minutes
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    server = await start_server(settings, database, verifier, engine)
    gateway = await started_gateway(f"127.0.0.1:{server.port}")
    tenant = await new_tenant()
    headers = {**headers_for(tenant), "X-Request-ID": "quiet-1"}
    try:
        async with (
            httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
            client.stream(
                "GET", "/api/events:subscribe", params={"topics": "notifications"}, headers=headers
            ) as response,
        ):
            assert response.status_code == 200  # headers came before any event
            assert response.headers["x-request-id"] == "quiet-1"
            events = Events(response)
            stopping = asyncio.create_task(server.stop(0))
            last = await events.next()
            await stopping
            assert await events.next() is None
    finally:
        await gateway.stop()
        await server.stop(0)
    assert last is not None and last.name == "error"
    assert last.data["error"]["code"] == "unavailable"
    assert last.data["error"]["request_id"] == "quiet-1"
