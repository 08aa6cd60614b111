"""Counts and times every HTTP request the gateway answers (`foundation.metrics`)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.metrics import metrics


class MetricsMiddleware:
    """Plain ASGI, so streamed answers are timed to their last byte; WebSockets pass by."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            families = metrics()
            method = str(scope["method"])
            families.gateway_requests.labels(method=method, status=str(status)).inc()
            families.gateway_duration.labels(method=method).observe(time.perf_counter() - began)
