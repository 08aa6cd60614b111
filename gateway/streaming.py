"""Server-streaming RPCs (`Subscribe`, `WatchExecution`) as Server-Sent Events.

Each answer is one event: `data:` its JSON on one line (after `response_body`, so Subscribe
sends the `Event` itself), `event:` the event's `type` (`workflow_execution_update`,
`heartbeat`, ...) or the name of the answer's oneof member (`snapshot`), and `id:` the
event id when it has one, so a client resumes with `Last-Event-ID` (the gateway passes it on
as `after_event_id`) or `after_event_id` in the query.

The response starts with the first answer, or after `OPENING_SECONDS` without one (a quiet
Subscribe), so a refusal the server makes at once (NOT_FOUND, TIER_RESTRICTION) is an ordinary
error response with its HTTP status. A failure after the start, such as UNAVAILABLE when the
server shuts down, is a last event named `error` holding the error body. A client that goes
away cancels the call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from google.protobuf.message import Message
from grpc import aio
from starlette.responses import StreamingResponse

from gateway.errors import rpc_error_body
from gateway.routes import Route
from gateway.transcode import response_json
from wfe.v1 import event_pb2

OPENING_SECONDS: Final = 1.0
RESUME_FIELD: Final = "after_event_id"
HEADERS: Final[Mapping[str, str]] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def resume_from(request: Message, last_event_id: str | None) -> None:
    """Sets `after_event_id` from a `Last-Event-ID` header, unless the query set it."""
    field = request.DESCRIPTOR.fields_by_name.get(RESUME_FIELD)
    if field is None or last_event_id is None or not last_event_id.isdigit():
        return
    if not request.HasField(RESUME_FIELD):
        setattr(request, RESUME_FIELD, int(last_event_id))


async def stream(
    route: Route, call: aio.UnaryStreamCall, request_id: str, headers: Mapping[str, str]
) -> StreamingResponse:
    """The call's answers as an event stream; raises the call's error if it fails first."""
    answers = aiter(call)
    first: asyncio.Future[Any] = asyncio.ensure_future(anext(answers, None))
    try:
        await asyncio.wait_for(asyncio.shield(first), OPENING_SECONDS)
    except TimeoutError:
        pass  # quiet so far: start the response, the first answer follows
    except BaseException:
        call.cancel()
        raise

    async def events() -> AsyncIterator[str]:
        try:
            answer = await first
            while answer is not None:
                yield frame(route, answer)
                answer = await anext(answers, None)
        except aio.AioRpcError as error:
            _, body = rpc_error_body(error, request_id)
            yield _frame("error", None, body)
        finally:
            first.cancel()
            call.cancel()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={**HEADERS, **headers}
    )


def frame(route: Route, answer: Message) -> str:
    """One Server-Sent Event for one answer."""
    name, event_id = _naming(answer)
    return _frame(name, event_id, response_json(route, answer))


def _naming(answer: Message) -> tuple[str | None, int | None]:
    event = _event_in(answer)
    if event is not None:
        return event.type or None, event.event_id or None
    for oneof in answer.DESCRIPTOR.oneofs:
        member = answer.WhichOneof(oneof.name)
        if member:
            return member, None
    return None, None


def _event_in(answer: Message) -> event_pb2.Event | None:
    if isinstance(answer, event_pb2.Event):
        return answer
    for field in answer.DESCRIPTOR.fields:
        if field.message_type is event_pb2.Event.DESCRIPTOR and answer.HasField(field.name):
            found: event_pb2.Event = getattr(answer, field.name)
            return found
    return None


def _frame(name: str | None, event_id: int | None, data: Any) -> str:
    lines = []
    if event_id:
        lines.append(f"id: {event_id}")
    if name:
        lines.append(f"event: {name}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"
