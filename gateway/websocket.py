"""The WebSocket `/api/workflows/ws`: seed 004's live updates over one `Subscribe` per socket.

Browsers cannot set headers on a WebSocket, so the credentials come in the first message,
``{"action": "authenticate", "token", "tenant_id"}`` (or, from other clients, in the
upgrade's `Authorization: Bearer` and `X-Tenant-ID` headers). The gateway holds no secret:
it checks them with a `TenantService.GetTenant` call and forwards them on every call.

The socket keeps a set of topics (``subscribe`` adds, ``unsubscribe`` removes) and follows
them with one `EventService.Subscribe` stream. A change restarts the stream after the last
event the socket delivered, so none is lost or repeated across it; a client that
reconnects passes its last `event_id` as ``after_event_id`` and misses nothing either.

A slow client costs one event: the next message is read from the stream only once the
previous one has gone out, so gRPC flow control holds the server back, and the server then
reads from its log instead of queueing. Client messages are read by their own task.

Close codes (README, "WebSocket"): 1000 normal; 1011 unexpected failure; 1012 the service is
restarting (reconnect with ``after_event_id``); 4401 no or bad credentials; 4403 a tenant
the token does not grant, or an `all_*` topic without the admin role; 4429 the plan's
`max_subscriptions` streams are open. Every close but 1000 follows an ``error`` message in
seed 004's error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, Final

import grpc
from grpc import aio
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.errors import GatewayError, error_body, invalid_input, rpc_error_body
from gateway.socket_events import event_json
from wfe.v1 import event_pb2, event_pb2_grpc, tenant_pb2, tenant_pb2_grpc

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
AUTHENTICATE_SECONDS: Final = 10.0
"""How long a socket without credentials in its headers waits for `authenticate`."""
ADMIN_TOPICS: Final = frozenset({"all_workflows", "all_executions"})
WORKFLOW_PREFIX: Final = "workflow:"
ACCEPTABLE_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER_TEXT: Final = re.compile(r"^[\x20-\x7e]+$")


class Close(IntEnum):
    """The close codes a socket ends with."""

    NORMAL = 1000
    INTERNAL = 1011
    SERVICE_RESTART = 1012
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    TOO_MANY_SUBSCRIPTIONS = 4429


CLOSE_FOR_STATUS: Final[Mapping[grpc.StatusCode, Close]] = {
    grpc.StatusCode.UNAUTHENTICATED: Close.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: Close.FORBIDDEN,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Close.TOO_MANY_SUBSCRIPTIONS,
    grpc.StatusCode.UNAVAILABLE: Close.SERVICE_RESTART,
    grpc.StatusCode.CANCELLED: Close.SERVICE_RESTART,
}
"""How a refused call ends the socket; any other status but `KEPT_OPEN`'s closes it 1011."""
KEPT_OPEN: Final = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
)
"""Topics refused: the socket says so and follows what it still may (`_narrowed`)."""


class _Ending(Exception):
    """Ends the socket: an `error` message with `body`, then a close with `code`."""

    def __init__(self, code: Close, body: JSON) -> None:
        super().__init__(body["error"]["message"])
        self.code = code
        self.body = body


@dataclass(frozen=True, slots=True)
class _Credentials:
    token: str
    tenant_id: str


async def workflow_socket(websocket: WebSocket) -> None:
    """Serves one socket until either side closes it."""
    await websocket.accept()
    await _Socket(websocket, websocket.app.state.channel).serve()


class _Socket:
    """One client's socket: its credentials, topics, position and `Subscribe` stream."""

    def __init__(self, websocket: WebSocket, channel: aio.Channel) -> None:
        self._websocket = websocket
        self._events = event_pb2_grpc.EventServiceStub(channel)
        self._tenants = tenant_pb2_grpc.TenantServiceStub(channel)
        supplied = websocket.headers.get("x-request-id", "")
        self._request_id = supplied if ACCEPTABLE_REQUEST_ID.match(supplied) else str(uuid.uuid4())
        self._sending = asyncio.Lock()  # one message at a time; held while topics change
        self._credentials: _Credentials | None = None
        self._topics: tuple[str, ...] = ()
        self._position: int | None = None  # the last event delivered, or the client's resume point
        self._stream: asyncio.Task[None] | None = None
        self._ended: asyncio.Future[_Ending | None] = asyncio.get_running_loop().create_future()

    async def serve(self) -> None:
        """Runs the reader and the stream until the client leaves or one of them ends the
        socket; then stops both, so no call or task outlives it, and closes as told."""
        reader = asyncio.create_task(self._read())
        try:
            either: list[asyncio.Future[Any]] = [reader, self._ended]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self._stop_stream()  # after the reader, which may be starting one
        ending = self._ended.result() if self._ended.done() else None
        if ending is None:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._send({"event": "error", **ending.body})
            await self._websocket.close(ending.code, ending.body["error"]["code"])

    def _end(self, ending: _Ending | None) -> None:
        if not self._ended.done():
            self._ended.set_result(ending)

    async def _read(self) -> None:
        """Reads the client's messages in order and answers each."""
        try:
            self._credentials = await self._authenticate_first()
            while True:
                message = await self._websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._answer(message)
        except _Ending as ending:
            self._end(ending)
        except (WebSocketDisconnect, OSError):
            pass
        except Exception:
            logger.exception("the socket's reader failed [request_id=%s]", self._request_id)
            self._end(_Ending(Close.INTERNAL, self._internal()))
        self._end(None)

    async def _authenticate_first(self) -> _Credentials:
        headers = self._websocket.headers
        scheme, _, token = headers.get("authorization", "").partition(" ")
        tenant_id = headers.get("x-tenant-id")
        if scheme.lower() == "bearer" and token and tenant_id:
            return await self._authenticate(token.strip(), tenant_id)
        try:
            async with asyncio.timeout(AUTHENTICATE_SECONDS):
                message = await self._websocket.receive()
        except TimeoutError:
            raise self._unauthenticated(
                f"send the authenticate message within {AUTHENTICATE_SECONDS:g} seconds"
            ) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", Close.NORMAL))
        try:
            first = _parsed(message)
        except GatewayError:
            first = {}
        if first.get("action") != "authenticate":
            raise self._unauthenticated("the first message must be the authenticate action")
        return await self._authenticate(first.get("token"), first.get("tenant_id"))

    async def _authenticate(self, token: object, tenant_id: object) -> _Credentials:
        """The credentials once the server has accepted them for the tenant."""
        if not isinstance(token, str) or not HEADER_TEXT.match(token):
            raise self._unauthenticated("authenticate needs the token, in printable ASCII")
        if not isinstance(tenant_id, str) or not HEADER_TEXT.match(tenant_id):
            raise self._unauthenticated("authenticate needs the tenant_id, in printable ASCII")
        credentials = _Credentials(token, tenant_id)
        try:
            await self._tenants.GetTenant(
                tenant_pb2.GetTenantRequest(),
                metadata=self._metadata(credentials),
                timeout=AUTHENTICATE_SECONDS,
            )
        except aio.AioRpcError as error:
            raise self._ending_for(error) from None
        await self._send({"event": "authenticated", "tenant_id": tenant_id})
        return credentials

    async def _answer(self, message: Message) -> None:
        try:
            request = _parsed(message)
            action = request.get("action")
            if action == "ping":
                stamp = request.get("timestamp") or _now()
                await self._send({"event": "pong", "timestamp": stamp})
            elif action == "subscribe":
                adding, after = _topics(request), _after(request)
                await self._follow(lambda now: (*now, *adding), after, "subscribed")
            elif action == "unsubscribe":
                removing = set(_topics(request))
                await self._follow(
                    lambda now: tuple(t for t in now if t not in removing), None, "unsubscribed"
                )
            elif action == "authenticate":
                await self._reauthenticate(request)
            else:
                raise invalid_input(f"unknown action {action!r}", "action", ACTIONS)
        except GatewayError as refusal:
            await self._send({"event": "error", **refusal.body(self._request_id)})

    async def _reauthenticate(self, request: JSON) -> None:
        """A fresh token for the same tenant: a long-lived socket outlives its token."""
        assert self._credentials is not None
        if request.get("tenant_id") != self._credentials.tenant_id:
            raise invalid_input("a socket serves one tenant: open another", "tenant_id", "its own")
        self._credentials = await self._authenticate(request.get("token"), request.get("tenant_id"))

    async def _follow(
        self, change: Callable[[tuple[str, ...]], Iterable[str]], after: int | None, ack: str
    ) -> None:
        """Restarts the stream on the changed topics, after the socket's position (or `after`).

        The change is worked out with `_sending` held, which the stream takes to deliver an
        event or to narrow its topics: so the position is the last event sent, and the
        topics the ones the stream last followed.
        """
        async with self._sending:
            topics = tuple(dict.fromkeys(change(self._topics)))
            if topics == self._topics and after is None:
                await self._send_now({"event": ack, "topics": list(topics)})
                return
            await self._stop_stream()
            previous, self._topics = self._topics, topics
            if after is not None:
                self._position = after
            await self._send_now({"event": ack, "topics": list(topics)})
            if topics:
                self._stream = asyncio.create_task(self._pump(previous))

    async def _stop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream

    async def _pump(self, previous: tuple[str, ...]) -> None:
        """Follows the topics; after a refusal of some, says so and follows what it still may."""
        try:
            while self._topics:
                refused = await self._forward()
                async with self._sending:
                    _, body = rpc_error_body(refused, self._request_id)
                    await self._send_now({"event": "error", **body})
                    self._topics = _narrowed(self._topics, previous, body["error"]["code"])
                    previous = ()
                    await self._send_now({"event": "subscribed", "topics": list(self._topics)})
        except _Ending as ending:
            self._end(ending)
        except (WebSocketDisconnect, OSError):
            self._end(None)
        except Exception:
            logger.exception("the socket's stream failed [request_id=%s]", self._request_id)
            self._end(_Ending(Close.INTERNAL, self._internal()))

    async def _forward(self) -> aio.AioRpcError:
        """Sends the stream's events, each before reading the next, until the server refuses
        the topics (returned) or ends the stream (`_Ending`)."""
        assert self._credentials is not None
        request = event_pb2.SubscribeRequest(topics=self._topics)
        if self._position is not None:
            request.after_event_id = self._position
        call = self._events.Subscribe(request, metadata=self._metadata(self._credentials))
        try:
            while True:
                answer = await call.read()
                if answer is aio.EOF:
                    raise _Ending(Close.SERVICE_RESTART, self._restarting())
                async with self._sending:
                    await self._send_now(event_json(answer.event))
                    if answer.event.event_id:
                        self._position = answer.event.event_id
        except aio.AioRpcError as error:
            if error.code() in KEPT_OPEN:
                return error
            raise self._ending_for(error) from None
        finally:
            call.cancel()

    def _metadata(self, credentials: _Credentials) -> tuple[tuple[str, str], ...]:
        return (
            ("authorization", f"Bearer {credentials.token}"),
            ("x-tenant-id", credentials.tenant_id),
            ("x-request-id", self._request_id),
        )

    async def _send(self, message: JSON) -> None:
        async with self._sending:
            await self._send_now(message)

    async def _send_now(self, message: JSON) -> None:
        """Sends with `_sending` held by the caller."""
        await self._websocket.send_text(json.dumps(message, ensure_ascii=False))

    def _ending_for(self, error: aio.AioRpcError) -> _Ending:
        _, body = rpc_error_body(error, self._request_id)
        return _Ending(CLOSE_FOR_STATUS.get(error.code(), Close.INTERNAL), body)

    def _unauthenticated(self, message: str) -> _Ending:
        body = error_body("unauthenticated", message, {}, self._request_id)
        return _Ending(Close.UNAUTHENTICATED, body)

    def _restarting(self) -> JSON:
        message = "the workflow service is restarting: reconnect with after_event_id"
        return error_body("unavailable", message, {}, self._request_id)

    def _internal(self) -> JSON:
        message = "internal error; quote the request id to support"
        return error_body("internal", message, {}, self._request_id)


ACTIONS: Final = "authenticate, subscribe, unsubscribe or ping"


def _parsed(message: Message) -> JSON:
    """A client message: a JSON object in a text frame."""
    try:
        request = json.loads(message["text"]) if message.get("text") is not None else None
    except json.JSONDecodeError:
        request = None
    if not isinstance(request, dict):
        raise invalid_input("send each message as a JSON object in a text frame", "", "JSON")
    return request


def _topics(request: JSON) -> list[str]:
    topics = request.get("topics")
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        raise invalid_input("topics must be a non-empty list of strings", "topics", "strings")
    return topics


def _after(request: JSON) -> int | None:
    after = request.get("after_event_id")
    if after is None:
        return None
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise invalid_input(
            "after_event_id must be 0 or an event_id received", "after_event_id", "an event_id"
        )
    return after


def _narrowed(topics: tuple[str, ...], previous: tuple[str, ...], code: str) -> tuple[str, ...]:
    """What a socket follows after the server refused `topics` with `code`.

    Beyond the plan (`tier_restriction`): the tenant-wide topics go first, then the
    `workflow:` ones, so a Free plan keeps its `execution:` topics (the seed's monitor asks
    for both). Anything else (a malformed topic): the topics followed before the change.
    """
    if code == "tier_restriction":
        for beyond in (ADMIN_TOPICS.__contains__, lambda topic: topic.startswith(WORKFLOW_PREFIX)):
            kept = tuple(topic for topic in topics if not beyond(topic))
            if kept != topics:
                return kept
        return ()
    return previous if previous != topics else ()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
