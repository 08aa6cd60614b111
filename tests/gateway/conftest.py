"""The gateway under test: the real ASGI app on uvicorn, in this process, calling the test server.

It is started as `wfe dev` starts it (`cli.web.start`), on a free port, and called over real
HTTP with httpx, so headers, status lines and bodies are what a browser would get.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cli import web
from foundation.settings import GatewaySettings
from service.server import RunningServer
from tests.conftest import token


def headers_for(tenant: str, *, roles: list[str] | None = None, **extra: str) -> dict[str, str]:
    """Seed 004's headers: a bearer token granting `tenant`, and `X-Tenant-ID`."""
    return {
        "Authorization": f"Bearer {token([tenant], roles=roles)}",
        "X-Tenant-ID": tenant,
        **extra,
    }


@dataclass
class Gateway:
    """A running gateway: its base URL and a client for it."""

    url: str
    http: httpx.AsyncClient

    async def call(
        self,
        verb: str,
        path: str,
        tenant: str | None = None,
        *,
        roles: list[str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """`verb path` as `tenant` (with `roles`), or without credentials when None."""
        sent = headers_for(tenant, roles=roles) if tenant else {}
        return await self.http.request(
            verb, path, json=json, params=params, headers={**sent, **(headers or {})}
        )


async def started_gateway(target: str, **settings: Any) -> web.RunningGateway:
    values = {"gateway_listen_address": "127.0.0.1:0", **settings}
    return await web.start(GatewaySettings(_env_file=None, **values), target, grace=1.0)


@pytest.fixture(scope="session")
async def gateway(server: RunningServer) -> AsyncIterator[Gateway]:
    running = await started_gateway(f"127.0.0.1:{server.port}")
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
        yield Gateway(running.url, client)
    await running.stop()
