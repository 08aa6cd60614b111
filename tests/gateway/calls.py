"""What gateway tests share: a workflow in the REST body's shape, and calls that make state."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.gateway.conftest import Gateway, headers_for


def hello(name: str = "Hello") -> dict[str, Any]:
    """The README's hello workflow, as a frontend posts it to `/api/workflows`."""
    return {
        "name": name,
        "input_schema": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
        "steps": [
            {"id": "input", "type": "input", "name": "Who to greet", "next": "greet"},
            {
                "id": "greet",
                "type": "tool",
                "name": "Build the greeting",
                "next": "done",
                "config": {
                    "tool": "transform",
                    "arguments": {"values": {"greeting": "Hello", "to": "$.input.name"}},
                },
            },
            {
                "id": "done",
                "type": "output",
                "name": "Greeting",
                "config": {"values": {"greeting": "$.greet.greeting", "to": "$.greet.to"}},
            },
        ],
    }


def failing_once(url: str) -> dict[str, Any]:
    """input -> call (an HTTP call that fails its first attempt) -> done."""
    return {
        "name": "Flaky",
        "input_schema": {"type": "object"},
        "steps": [
            {"id": "input", "type": "input", "next": "call"},
            {
                "id": "call",
                "type": "tool",
                "next": "done",
                "config": {"tool": "http_request", "arguments": {"url": url, "method": "POST"}},
            },
            {"id": "done", "type": "output", "config": {"values": {}}},
        ],
    }


def ok(response: httpx.Response) -> Any:
    """The JSON of a 200, or the failure with its body."""
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Seed 004's error body of a refusal with `status` and `code`; its `error` object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["code"] == code, error
    assert error["message"] and isinstance(error["details"], dict)
    assert error["request_id"] == response.headers["x-request-id"]
    return error


async def created(gateway: Gateway, tenant: str, document: dict[str, Any] | None = None) -> str:
    """A new draft's id."""
    workflow = ok(await gateway.call("POST", "/api/workflows", tenant, json=document or hello()))
    return str(workflow["id"])


async def active(gateway: Gateway, tenant: str, document: dict[str, Any] | None = None) -> str:
    """A new active workflow's id."""
    workflow_id = await created(gateway, tenant, document)
    ok(await gateway.call("POST", f"/api/workflows/{workflow_id}:activate", tenant))
    return workflow_id


async def started(gateway: Gateway, tenant: str, workflow_id: str, **input_: Any) -> str:
    """A new execution's id."""
    path = f"/api/workflows/{workflow_id}/executions"
    execution = ok(await gateway.call("POST", path, tenant, json={"input": input_}))
    return str(execution["id"])


@dataclass
class Sse:
    """One Server-Sent Event."""

    name: str | None
    event_id: str | None
    data: Any


class Events:
    """The Server-Sent Events of a streamed response, read one by one."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> Sse | None:
        """The next event; None once the stream has ended."""
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line:
                key, _, value = line.partition(": ")
                fields[key] = value
            elif fields:
                return Sse(fields.get("event"), fields.get("id"), json.loads(fields["data"]))
        return None

    async def until(self, name: str) -> list[Sse]:
        """Every event but heartbeats, up to and with the first named `name`."""
        found = []
        while (event := await self.next()) is not None:
            if event.name != "heartbeat":
                found.append(event)
            if event.name == name:
                return found
        raise AssertionError(f"the stream ended before {name}: {found}")


async def read_events(response: httpx.Response) -> list[Sse]:
    """Every event of a stream that ends."""
    events = Events(response)
    found = []
    while (event := await events.next()) is not None:
        found.append(event)
    return found


async def finished(gateway: Gateway, tenant: str, execution_id: str) -> dict[str, Any]:
    """The execution once it has ended: its watch stream runs until then."""
    path = f"/api/executions/{execution_id}:watch"
    async with gateway.http.stream("GET", path, headers=headers_for(tenant)) as response:
        assert response.status_code == 200, await response.aread()
        await read_events(response)
    return dict(ok(await gateway.call("GET", f"/api/executions/{execution_id}", tenant)))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
