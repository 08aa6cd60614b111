"""The ASGI application: REST routes from the protos, answered by calls to `wfe serve`.

The gateway is a gRPC client and nothing more: it forwards `Authorization`, `X-Tenant-ID` and
`X-Request-ID` as call metadata and holds no secret, no database and no state beyond its one
channel (opened in the lifespan, at `app.state.channel`), so any number of them run behind a
load balancer. The server authenticates, authorizes and scopes every call as it does for gRPC
clients.

Every answer that is not a success is seed 004's error body (`gateway.errors`), the gateway's
own refusals included: an unknown path (404), a verb the path does not take (405), a body too
large (413), not JSON (415) or malformed (400), and an unexpected failure (500, details only
in the log). Every response carries `X-Request-ID`: the caller's when it is acceptable (1 to
128 of `A-Za-z0-9._:-`, the server's rule), else a new UUID, sent on to the server.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from google.protobuf import message_factory
from grpc import aio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute

from gateway import streaming, transcode
from gateway.errors import GatewayError, error_body, rpc_error_body
from gateway.metrics import MetricsMiddleware
from gateway.routes import Route as ApiRoute
from gateway.routes import Router, build_routes
from gateway.websocket import workflow_socket

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER: Final = "x-request-id"
FORWARDED: Final = ("authorization", "x-tenant-id", "traceparent", "tracestate")
"""Passed on as call metadata: the caller's credentials and tenant, and its trace context."""
ACCEPTABLE_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER_TEXT: Final = re.compile(r"^[\x20-\x7e]*$")
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
CHANNEL_OPTIONS: Final = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)
SOCKET_PATH: Final = "/api/workflows/ws"
CORS_HEADERS: Final = ("Authorization", "Content-Type", "X-Tenant-ID", "X-Request-ID")
INTERNAL: Final = "internal error; quote the request id to support"
HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def create_app(
    target: str,
    *,
    cors_origins: Sequence[str] = (),
    routes: Sequence[BaseRoute] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """The gateway for the server at `target` (`host:port`).

    Args:
        target: Where `wfe serve` listens.
        cors_origins: Origins whose browser pages may call the API (`*`: any); none turns
            CORS off.
        routes: More Starlette routes (pages, documents), matched before the API's.
        max_body_bytes: A larger request body is refused with 413.
    """
    router = Router(build_routes())
    api = _Api(router, max_body_bytes, routes)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
            app.state.channel = channel
            yield

    middleware = [Middleware(MetricsMiddleware)]
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=sorted({route.verb for route in router.routes}),
                allow_headers=[*CORS_HEADERS, "Last-Event-ID"],
                expose_headers=[REQUEST_ID_HEADER],
                max_age=600,
            )
        )
    app = Starlette(
        routes=[
            *routes,
            WebSocketRoute(SOCKET_PATH, workflow_socket),
            Route("/{path:path}", api.handle, methods=HTTP_METHODS),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.router = router
    return app


class _Api:
    """Answers every HTTP request no other route took, from the API's routes."""

    def __init__(self, router: Router, max_body_bytes: int, others: Sequence[BaseRoute]) -> None:
        self._router = router
        self._max_body_bytes = max_body_bytes
        self._others = others

    async def handle(self, request: Request) -> Response:
        request_id = request_id_of(request.headers)
        try:
            self._refuse_other_verbs(request)
            route, variables = self._router.match(request.method, request.url.path)
            metadata = forwarded_metadata(request.headers, request_id)
            body = transcode.parse_body(await self._body(request)) if route.body else None
            message = transcode.request_message(
                route, variables, request.query_params.multi_items(), body
            )
            if route.streaming:
                return await self._stream(request, route, message, metadata, request_id)
            return await self._unary(request, route, message, metadata, request_id)
        except GatewayError as error:
            return error_response(error.status, error.body(request_id), error.headers)
        except aio.AioRpcError as error:
            return error_response(*rpc_error_body(error, request_id))
        except Exception:
            logger.exception(
                "%s %s failed [request_id=%s]", request.method, request.url.path, request_id
            )
            return error_response(500, error_body("internal", INTERNAL, {}, request_id))

    def _refuse_other_verbs(self, request: Request) -> None:
        """A 405 for a path another route (a page, a document) serves under other verbs."""
        for other in self._others:
            match, _ = other.matches(request.scope)
            if match is Match.PARTIAL:
                verbs = ", ".join(sorted(getattr(other, "methods", None) or ()))
                raise GatewayError(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed on {request.url.path}",
                    {"allowed_methods": verbs},
                    headers={"Allow": verbs} if verbs else None,
                )

    async def _unary(
        self,
        request: Request,
        route: ApiRoute,
        message: Any,
        metadata: tuple[tuple[str, str], ...],
        request_id: str,
    ) -> Response:
        call = _channel(request).unary_unary(route.grpc_method, **_codecs(route))
        answer = await call(message, metadata=metadata)
        return JSONResponse(
            transcode.response_json(route, answer), headers={REQUEST_ID_HEADER: request_id}
        )

    async def _stream(
        self,
        request: Request,
        route: ApiRoute,
        message: Any,
        metadata: tuple[tuple[str, str], ...],
        request_id: str,
    ) -> Response:
        streaming.resume_from(message, request.headers.get("last-event-id"))
        call = _channel(request).unary_stream(route.grpc_method, **_codecs(route))(
            message, metadata=metadata
        )
        return await streaming.stream(route, call, request_id, {REQUEST_ID_HEADER: request_id})

    async def _body(self, request: Request) -> bytes:
        """The body, at most `max_body_bytes` of it; any but an empty one must be JSON."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            raise self._too_large()
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        body = b"".join(chunks)
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if body.strip() and kind != "application/json" and not kind.endswith("+json"):
            raise GatewayError(
                415,
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
                {"content_type": kind},
            )
        return body

    def _too_large(self) -> GatewayError:
        return GatewayError(
            413,
            "payload_too_large",
            f"the request body is larger than {self._max_body_bytes} bytes",
            {"max_body_bytes": str(self._max_body_bytes)},
        )


def _channel(request: Request) -> aio.Channel:
    return request.app.state.channel


def _codecs(route: ApiRoute) -> dict[str, Any]:
    """How the route's RPC writes its request and reads its answers."""
    return {
        "request_serializer": message_factory.GetMessageClass(route.request_type).SerializeToString,
        "response_deserializer": message_factory.GetMessageClass(
            route.method.output_type
        ).FromString,
    }


def request_id_of(headers: Mapping[str, str]) -> str:
    """The caller's `X-Request-ID` when acceptable, else a new UUID."""
    supplied = headers.get(REQUEST_ID_HEADER, "")
    return supplied if ACCEPTABLE_REQUEST_ID.match(supplied) else str(uuid.uuid4())


def forwarded_metadata(headers: Mapping[str, str], request_id: str) -> tuple[tuple[str, str], ...]:
    """The call metadata: the caller's credentials, tenant and trace context as sent, and the
    request id."""
    metadata = [(REQUEST_ID_HEADER, request_id)]
    for name in FORWARDED:
        value = headers.get(name)
        if value is None:
            continue
        if not HEADER_TEXT.match(value):
            raise GatewayError(
                400,
                "invalid_input",
                f"the {name} header holds characters outside printable ASCII",
                {"field_violations": [{"field": name, "description": "printable ASCII only"}]},
            )
        metadata.append((name, value))
    return tuple(metadata)


def error_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The error body with its status, `X-Request-ID` and, for a 401, `WWW-Authenticate`."""
    extra = {REQUEST_ID_HEADER: body["error"]["request_id"], **(headers or {})}
    if status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, headers=extra)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (a verb an extra route does not take) in the error body."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_input")
    body = error_body(code, exc.detail, {}, request_id_of(request.headers))
    return error_response(exc.status_code, body, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    request_id = request_id_of(request.headers)
    logger.error("%s failed [request_id=%s]", request.url.path, request_id, exc_info=exc)
    return error_response(500, error_body("internal", INTERNAL, {}, request_id))
