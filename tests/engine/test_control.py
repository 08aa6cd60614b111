"""Cancel, retry and rerun, as a caller drives them."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info, token
from tests.effects_stub import Effects
from tests.engine.test_lifecycle import events_of
from tests.engine.test_retries import calling
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    http,
    start,
    step,
    struct,
    three_steps,
    transform,
    wait_until,
    workflow,
)
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED
CANCELLED = execution_pb2.EXECUTION_STATUS_CANCELLED
IN_PROGRESS = frozenset({execution_pb2.EXECUTION_STATUS_IN_PROGRESS})


async def cancel(channel: aio.Channel, tenant: str, execution_id: str, **kw: str) -> object:
    request = execution_pb2.CancelExecutionRequest(
        execution_id=execution_id, reason="no longer needed"
    )
    metadata = auth(tenant, bearer=token([tenant], subject=kw.get("subject", "user-1")))
    return (await executions(channel).CancelExecution(request, metadata=metadata)).execution


async def test_cancelling_a_running_execution_stops_it_and_starts_no_further_step(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    document = workflow(
        step("input", "input", "slow"),
        http("slow", "after", effects.url(sleep=4)),
        http("after", "done", effects.url()),
        step("done", "output", config={"values": {}}),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    await wait_until(
        channel, tenant, started.id, IN_PROGRESS, where=lambda e: e.current_step == "slow"
    )
    cancelled = await cancel(channel, tenant, started.id, subject="operator-7")
    assert cancelled.status == CANCELLED
    assert cancelled.cancelled_by == "operator-7"
    statuses = [execution_pb2.StepStatus.Name(s.status) for s in cancelled.steps]
    assert statuses == [
        "STEP_STATUS_COMPLETED",
        "STEP_STATUS_CANCELLED",
        "STEP_STATUS_CANCELLED",
        "STEP_STATUS_CANCELLED",
    ]
    # Until the slow call has answered: its result must not be recorded.
    slow_call = f"{started.id}:slow:1"
    await eventually(lambda: effects.deliveries[slow_call], "the slow call answered")
    after = await wait_until(channel, tenant, started.id)
    assert after.status == CANCELLED
    assert [s.status for s in after.steps] == [s.status for s in cancelled.steps]
    assert effects.keys_of(started.id) == [f"{started.id}:slow:1"]
    payloads = await events_of(database, tenant, started.id)
    control = [p for p in payloads if p["event"] == "workflow_execution_control"]
    assert control[0]["action"] == "cancel" and control[0]["actor"] == "operator-7"
    assert control[0]["details"] == {"reason": "no longer needed"}
    assert payloads[-1]["event"] == "workflow_execution_completed"
    assert payloads[-1]["status"] == "cancelled"
    with pytest.raises(aio.AioRpcError) as caught:
        await cancel(channel, tenant, started.id)
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WORKFLOW_EXECUTION_ERROR")
    assert metadata["status"] == "cancelled"


async def test_retry_resumes_a_failed_execution_from_the_failed_step(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    document = workflow(
        step("input", "input", "first"),
        http("first", "flaky", effects.url(), method="POST"),
        http("flaky", "done", effects.url(fail_first=1), method="POST"),
        step("done", "output", config={"values": {"first": "$.first.body.sequence"}}),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    failed = await wait_until(channel, tenant, started.id)
    assert failed.status == FAILED and failed.error.step_id == "flaky"
    first_output = failed.steps[1].output
    request = execution_pb2.RetryExecutionRequest(execution_id=started.id)
    retried = (await executions(channel).RetryExecution(request, metadata=auth(tenant))).execution
    assert retried.id == started.id
    assert retried.status in (
        execution_pb2.EXECUTION_STATUS_PENDING,
        execution_pb2.EXECUTION_STATUS_IN_PROGRESS,
    )
    assert not retried.error_detail
    done = await wait_until(channel, tenant, started.id)
    assert done.status == COMPLETED, done.error_detail
    # The completed step was not run again: one key, its output reused.
    assert effects.applied_count(started.id, "first") == 1
    assert done.steps[1].output == first_output
    assert effects.keys_of(started.id) == [
        f"{started.id}:first:1",
        f"{started.id}:flaky:1",
        f"{started.id}:flaky:2",
    ]
    payloads = await events_of(database, tenant, started.id)
    assert any(
        p["event"] == "workflow_execution_control" and p["action"] == "retry" for p in payloads
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await executions(channel).RetryExecution(request, metadata=auth(tenant))
    assert error_info(caught.value)[0] == grpc.StatusCode.FAILED_PRECONDITION


async def test_rerun_starts_a_new_execution_from_any_step_with_patched_input(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    document = workflow(
        step("input", "input", "shape"),
        transform("shape", "polish", {"greeting": "$.input.name"}),
        transform("polish", "done", {"text": "$.shape.greeting", "who": "$.input.name"}),
        step("done", "output", config={"values": {"text": "$.polish.text", "who": "$.polish.who"}}),
        schema={"type": "object", "properties": {"name": {"type": "string"}}},
    )
    workflow_id = await active_workflow(channel, tenant, document)
    original = await wait_until(
        channel, tenant, (await start(channel, tenant, workflow_id, {"name": "Ada"})).id
    )
    assert dict(original.result) == {"text": "Ada", "who": "Ada"}
    request = execution_pb2.RerunExecutionRequest(
        execution_id=original.id, from_step="polish", input_patch=struct({"name": "Grace"})
    )
    rerun = (await executions(channel).RerunExecution(request, metadata=auth(tenant))).execution
    assert rerun.id != original.id
    assert (rerun.rerun_of, rerun.rerun_from_step) == (original.id, "polish")
    assert dict(rerun.input) == {"name": "Grace"}
    done = await wait_until(channel, tenant, rerun.id)
    assert done.status == COMPLETED
    # `shape` was reused from the original (its output says Ada); `polish` ran on the new input.
    assert dict(done.result) == {"text": "Ada", "who": "Grace"}
    assert done.steps[1].status == execution_pb2.STEP_STATUS_COMPLETED
    assert done.steps[1].start_time == original.steps[1].start_time
    assert done.steps[2].start_time.ToDatetime() > original.complete_time.ToDatetime()
    assert done.workflow_version == original.workflow_version


async def test_rerun_refuses_an_unknown_step_bad_input_or_a_running_execution(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    finished = await wait_until(
        channel, tenant, (await start(channel, tenant, workflow_id, {"name": "x"})).id
    )
    stub = executions(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.RerunExecution(
            execution_pb2.RerunExecutionRequest(execution_id=finished.id, from_step="nope"),
            metadata=auth(tenant),
        )
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    strict = workflow(
        *three_steps()["steps"],
        schema={"type": "object", "properties": {"name": {"type": "string"}}},
    )
    strict_id = await active_workflow(channel, tenant, strict)
    strict_run = await wait_until(
        channel, tenant, (await start(channel, tenant, strict_id, {"name": "y"})).id
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.RerunExecution(
            execution_pb2.RerunExecutionRequest(
                execution_id=strict_run.id, from_step="shape", input_patch=struct({"name": 5})
            ),
            metadata=auth(tenant),
        )
    assert error_info(caught.value)[1] == "INVALID_INPUT"
    slow_id = await active_workflow(channel, tenant, calling(effects.url(sleep=2)))
    running = await start(channel, tenant, slow_id)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.RerunExecution(
            execution_pb2.RerunExecutionRequest(execution_id=running.id, from_step="call"),
            metadata=auth(tenant),
        )
    assert error_info(caught.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
    await wait_until(channel, tenant, running.id)
