"""An execution's life as a client sees it: start at once, poll, every step recorded."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from sqlalchemy import select

from persistence.models import Event
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    executions,
    get,
    http,
    start,
    step,
    three_steps,
    to_dict,
    wait_until,
    workflow,
)
from tests.workflow_helpers import create, update_steps
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
SEED_STEP_KEYS = {"name", "status", "started_at", "completed_at", "error"}


async def events_of(
    database: TenantDatabase, tenant: str, execution_id: str
) -> list[dict[str, Any]]:
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.scalars(
            select(Event).where(Event.execution_id == execution_id).order_by(Event.id)
        )
        return [row.payload for row in rows]


def branching(effects: Effects) -> dict[str, Any]:
    """input -> call (http) -> decide -> big / small (outputs)."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http(
            "call",
            "decide",
            effects.url(),
            method="POST",
            name="Call",
            arguments={"body": {"amount": "$.input.amount"}},
        ),
        step(
            "decide",
            "condition",
            name="Decide",
            config={
                "conditions": [{"condition": "$.input.amount > 100", "next": "big"}],
                "default": "small",
            },
        ),
        step(
            "big",
            "output",
            name="Big",
            config={"values": {"size": "big", "key": "$.call.body.key"}},
        ),
        step("small", "output", name="Small", config={"values": {"size": "small"}}),
        schema={
            "type": "object",
            "required": ["amount"],
            "properties": {"amount": {"type": "number"}},
        },
    )


async def test_start_answers_at_once_with_every_step_pending(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("professional")
    slow = workflow(
        step("input", "input", "wait_for_it", name="Input"),
        http("wait_for_it", "done", effects.url(sleep=1.5), name="Slow call"),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )
    workflow_id = await active_workflow(channel, tenant, slow)
    started = await start(channel, tenant, workflow_id)
    assert started.status == execution_pb2.EXECUTION_STATUS_PENDING
    document = to_dict(started.steps_document)
    assert document["total_steps"] == 3
    assert document["current_step_number"] == 0
    assert [item["name"] for item in document["step_list"]] == ["Input", "Slow call", "Done"]
    for item in document["step_list"]:
        assert SEED_STEP_KEYS <= set(item)
        assert (item["status"], item["started_at"], item["completed_at"]) == ("pending", None, None)
    running = await wait_until(
        channel, tenant, started.id, frozenset({execution_pb2.EXECUTION_STATUS_IN_PROGRESS})
    )
    assert running.current_step in ("input", "wait_for_it")
    finished = await wait_until(channel, tenant, started.id)
    assert finished.status == COMPLETED
    assert dict(finished.result) == {"ok": True}


async def test_a_finished_execution_records_every_step_and_its_result(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, branching(effects))
    started = await start(channel, tenant, workflow_id, {"amount": 250})
    done = await wait_until(channel, tenant, started.id)
    assert done.status == COMPLETED, done.error_detail
    assert done.progress == 1.0
    assert done.result["size"] == "big"
    assert done.result["key"] == f"{started.id}:call:1"
    statuses = {s.step_id: execution_pb2.StepStatus.Name(s.status) for s in done.steps}
    assert statuses == {
        "input": "STEP_STATUS_COMPLETED",
        "call": "STEP_STATUS_COMPLETED",
        "decide": "STEP_STATUS_COMPLETED",
        "big": "STEP_STATUS_COMPLETED",
        "small": "STEP_STATUS_SKIPPED",
    }
    ran = [s for s in done.steps if s.status == execution_pb2.STEP_STATUS_COMPLETED]
    for earlier, later in itertools.pairwise(ran):
        assert earlier.complete_time.ToDatetime() <= later.start_time.ToDatetime()
    for item in ran:
        assert item.start_time.ToDatetime() <= item.complete_time.ToDatetime()
        assert item.attempts == 1
    assert to_dict(done.steps[1].output)["status_code"] == 200
    assert done.current_step == "big" and done.current_step_number == 4
    assert done.start_time.ToDatetime() <= done.complete_time.ToDatetime()
    document = to_dict(done.steps_document)
    assert document["current_step_number"] == 4
    assert [i["status"] for i in document["step_list"]] == [
        "completed",
        "completed",
        "completed",
        "completed",
        "skipped",
    ]


async def test_each_transition_appends_its_seed_event(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, branching(effects))
    started = await start(channel, tenant, workflow_id, {"amount": 5})
    done = await wait_until(channel, tenant, started.id)
    assert done.result["size"] == "small"
    payloads = await events_of(database, tenant, started.id)
    kinds = [p["event"] for p in payloads]
    assert kinds[0] == "workflow_execution_update"
    assert kinds[-1] == "workflow_execution_completed"
    assert kinds.count("workflow_step_completed") == 4
    for payload in payloads:
        assert payload["execution_id"] == started.id
        assert payload["workflow_id"] == workflow_id
        assert payload["timestamp"].endswith("Z")
    updates = [p for p in payloads if p["event"] == "workflow_execution_update"]
    assert {"status", "current_step", "progress", "details"} <= set(updates[-1])
    assert {"step_name", "started_at", "message"} <= set(updates[-1]["details"])
    assert {u["status"] for u in updates} == {"pending", "running"}
    completed_steps = [p for p in payloads if p["event"] == "workflow_step_completed"]
    assert [(p["step_id"], p["next_step"]) for p in completed_steps] == [
        ("input", "call"),
        ("call", "decide"),
        ("decide", "small"),
        ("small", None),
    ]
    call = completed_steps[1]
    assert call["step_name"] == "Call" and call["output"]["status_code"] == 200
    assert isinstance(call["duration_ms"], int) and call["duration_ms"] >= 0
    final = payloads[-1]
    assert final["status"] == "completed"
    assert final["output"] == {"size": "small"}
    assert {"started_at", "completed_at", "duration_ms"} <= set(final)


async def test_input_that_breaks_the_schema_is_refused_and_nothing_starts(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, branching(effects))
    with pytest.raises(aio.AioRpcError) as caught:
        await start(channel, tenant, workflow_id, {"amount": "lots"})
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    assert fields == ["input.amount"]
    listed = await _list(channel, tenant)
    assert listed == []


async def _list(channel: aio.Channel, tenant: str) -> list[str]:
    response = await executions(channel).ListExecutions(
        execution_pb2.ListExecutionsRequest(), metadata=auth(tenant)
    )
    return [e.id for e in response.executions]


async def test_only_active_workflows_start(channel: aio.Channel, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("free")
    draft = await create(channel, tenant, three_steps())
    with pytest.raises(aio.AioRpcError) as caught:
        await start(channel, tenant, draft.id)
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WORKFLOW_EXECUTION_ERROR")
    assert metadata["status"] == "draft"
    with pytest.raises(aio.AioRpcError) as caught:
        await start(channel, tenant, str(uuid.uuid4()))
    assert error_info(caught.value)[1] == "WORKFLOW_NOT_FOUND"


async def test_a_retried_start_with_the_same_request_id_returns_the_same_execution(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    request_id = str(uuid.uuid4())
    first = await start(channel, tenant, workflow_id, {"name": "x"}, request_id=request_id)
    again = await start(channel, tenant, workflow_id, {"name": "x"}, request_id=request_id)
    assert again.id == first.id
    assert await _list(channel, tenant) == [first.id]
    done = await wait_until(channel, tenant, first.id)
    assert done.status == COMPLETED
    assert (await get(channel, tenant, first.id)).result["greeting"] == "x"


async def test_an_execution_keeps_the_definition_it_started_with(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    slow = workflow(
        step("input", "input", "wait_for_it"),
        http("wait_for_it", "done", effects.url(sleep=1)),
        step("done", "output", config={"values": {"version": "first"}}),
    )
    workflow_id = await active_workflow(channel, tenant, slow)
    started = await start(channel, tenant, workflow_id)
    changed = dict(slow)
    changed["steps"] = [
        *slow["steps"][:2],
        step("done", "output", config={"values": {"version": "second"}}),
    ]
    await update_steps(channel, tenant, workflow_id, changed)
    done = await wait_until(channel, tenant, started.id)
    assert dict(done.result) == {"version": "first"}
    assert done.workflow_version == started.workflow_version
