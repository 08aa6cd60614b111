"""Bounded work per request over a real server, on every backend: oversized definitions, inputs
and outputs refused as the tier says, validation off the event loop, legacy retry rows clamped.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from persistence.models import Workflow
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    attempts_of,
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
from tests.workflow_helpers import create, message, stub
from tests.workflows.test_bounded_validation import TEN_THOUSAND_YEARS, chain
from tiers import PLANS, Tier
from wfe.v1 import execution_pb2, tenant_pb2, tenant_pb2_grpc, workflow_pb2

FREE = PLANS[Tier.FREE]
FAILED = execution_pb2.EXECUTION_STATUS_FAILED


async def validate(
    channel: aio.Channel, tenant: str, document: dict[str, Any]
) -> workflow_pb2.ValidateWorkflowResponse:
    request = workflow_pb2.ValidateWorkflowRequest(workflow=message(document))
    return await stub(channel).ValidateWorkflow(request, metadata=auth(tenant))


async def workflow_count(channel: aio.Channel, tenant: str) -> int:
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant)
    )
    return len(listed.workflows)


def heavy(count: int, paths: int) -> dict[str, Any]:
    """`count` steps, each a transform of `paths` input paths: allowed, but seconds of parsing."""
    values = {f"v{n}": f"$.input.a{n}" for n in range(paths)}
    middle = [transform(f"t{i}", f"t{i + 1}", values) for i in range(1, count - 1)]
    middle[-1]["next"] = "done"
    return workflow(step("input", "input", "t1"), *middle, step("done", "output"))


async def test_a_5000_step_free_validation_answers_one_violation_quickly(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    request = workflow_pb2.ValidateWorkflowRequest(workflow=message(chain(5000)))
    started = time.monotonic()
    answer = await stub(channel).ValidateWorkflow(request, metadata=auth(tenant))
    assert time.monotonic() - started < 2.0
    assert not answer.valid
    assert [(issue.code, issue.field) for issue in answer.errors] == [("tier_restriction", "steps")]
    assert "5000 steps exceed the plan's 10 steps per workflow" in answer.errors[0].message
    assert list(answer.warnings) == []


async def test_a_10000_step_enterprise_create_is_refused_quickly_and_stores_nothing(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    request = workflow_pb2.CreateWorkflowRequest(workflow=message(chain(10_000)))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        await stub(channel).CreateWorkflow(request, metadata=auth(tenant))
    assert time.monotonic() - started < 3.0  # was 8 s and more: validation ran to the end
    code, reason, metadata = error_info(refused.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
    assert metadata["codes"] == "tier_restriction" and metadata["error_count"] == "1"
    assert "10000 steps exceed the plan's 2000 steps" in str(refused.value.details())
    assert await workflow_count(channel, tenant) == 0


async def test_health_answers_while_a_large_allowed_validation_runs(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    # Seconds of work, well inside the server's 5 s budget even on a machine shared with
    # another run of the suite.
    request = workflow_pb2.ValidateWorkflowRequest(workflow=message(heavy(1000, 6)))
    health = health_pb2_grpc.HealthStub(channel)

    async def validation() -> workflow_pb2.ValidateWorkflowResponse:
        return await stub(channel).ValidateWorkflow(request, metadata=auth(tenant))

    validating = asyncio.create_task(validation())
    answered, slowest = 0, 0.0
    while not validating.done():
        asked = time.monotonic()
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        slowest = max(slowest, time.monotonic() - asked)
        answered += 1
    answer = await validating
    assert answer.valid, list(answer.errors)[:3]
    assert answered >= 3, "the validation ended before health was asked"
    assert slowest < 0.5


async def test_a_definition_over_the_tier_cap_is_refused_and_stores_nothing(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    document = {**three_steps(), "description": "x" * FREE.max_definition_bytes}
    answer = await validate(channel, tenant, document)
    assert [(issue.code, issue.field) for issue in answer.errors] == [
        ("tier_restriction", "workflow")
    ]
    assert f"the plan allows {FREE.max_definition_bytes}" in answer.errors[0].message
    with pytest.raises(grpc.RpcError) as refused:
        await create(channel, tenant, document)
    code, reason, metadata = error_info(refused.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
    assert metadata["codes"] == "tier_restriction"
    created = await create(channel, tenant, three_steps())
    big = message(document)
    big.id = created.id
    update = workflow_pb2.UpdateWorkflowRequest(workflow=big)
    update.update_mask.paths.append("description")
    with pytest.raises(grpc.RpcError) as refused:
        await stub(channel).UpdateWorkflow(update, metadata=auth(tenant))
    assert error_info(refused.value)[1] == "INVALID_WORKFLOW_DEFINITION"
    assert await workflow_count(channel, tenant) == 1
    kept = await stub(channel).GetWorkflow(
        workflow_pb2.GetWorkflowRequest(id=created.id), metadata=auth(tenant)
    )
    assert kept.workflow.version == 1 and kept.workflow.description == ""


async def test_an_input_over_the_tier_cap_is_refused_and_starts_nothing(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    blob = {"name": "x" * FREE.max_input_bytes}
    with pytest.raises(grpc.RpcError) as refused:
        await start(channel, tenant, workflow_id, blob)
    code, reason, metadata = error_info(refused.value)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TIER_RESTRICTION")
    assert metadata["quota"] == "max_input_bytes"
    assert metadata["limit"] == str(FREE.max_input_bytes)
    assert int(metadata["used"]) > FREE.max_input_bytes
    tenant_stub = tenant_pb2_grpc.TenantServiceStub(channel)
    shown = await tenant_stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=auth(tenant))
    assert shown.tenant.usage.executions_today == 0
    assert shown.tenant.limits.max_input_bytes == FREE.max_input_bytes

    finished = await wait_until(
        channel, tenant, (await start(channel, tenant, workflow_id, {"name": "a"})).id
    )
    rerun = execution_pb2.RerunExecutionRequest(execution_id=finished.id, input_patch=struct(blob))
    with pytest.raises(grpc.RpcError) as refused:
        await executions(channel).RerunExecution(rerun, metadata=auth(tenant))
    code, reason, metadata = error_info(refused.value)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TIER_RESTRICTION")
    listed = await executions(channel).ListExecutions(
        execution_pb2.ListExecutionsRequest(), metadata=auth(tenant)
    )
    assert [execution.id for execution in listed.executions] == [finished.id]


async def test_a_step_output_over_the_tier_cap_fails_the_step_without_storing_it(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    copies = FREE.max_output_bytes // (FREE.max_input_bytes // 2) + 1
    document = workflow(
        step("input", "input", "copy"),
        transform("copy", "done", {f"c{n}": "$.input.blob" for n in range(copies)}),
        step("done", "output", config={"values": {"reached": True}}),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id, {"blob": "x" * (FREE.max_input_bytes // 2)})
    done = await wait_until(channel, tenant, started.id)
    assert done.status == FAILED
    assert done.error.code == "output_too_large" and done.error.step_id == "copy"
    assert f"the plan allows {FREE.max_output_bytes}" in done.error.message
    assert done.steps[1].attempts == 1  # never retried
    assert done.ByteSize() < FREE.max_output_bytes


async def test_a_stored_10000_year_retry_interval_retries_within_a_day(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    """A row saved before the bounds: the failure is recorded and the retry set a day out at
    most, where the engine used to overflow and leave the step in progress for ever."""
    tenant = await new_tenant("free")
    retry = {"max_attempts": 3, "initial_interval": "1s"}
    document = workflow(
        step("input", "input", "call"),
        http("call", "done", effects.url(status=503), method="POST", retry=retry),
        step("done", "output"),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    async with database.transaction(TenantId(tenant)) as session:
        row = await session.get(Workflow, workflow_id)
        assert row is not None
        steps = [dict(s) for s in row.definition["steps"]]
        steps[1]["retry"] = {**retry, "initial_interval": TEN_THOUSAND_YEARS}
        row.definition = {**row.definition, "steps": steps}
    started = await start(channel, tenant, workflow_id)
    running = await wait_until(
        channel,
        tenant,
        started.id,
        statuses=frozenset({execution_pb2.EXECUTION_STATUS_IN_PROGRESS}),
        where=lambda e: e.steps[1].error.code == "external_service_error",
    )
    assert running.steps[1].attempts >= 1
    attempts = await attempts_of(database, tenant, started.id, "call")
    assert [a.status for a in attempts] == ["failed", "scheduled"]
    first, second = attempts
    assert first.finished_at is not None
    wait = (second.due_at - first.finished_at).total_seconds()
    assert 0 < wait <= 24 * 3600 + 60
    await executions(channel).CancelExecution(
        execution_pb2.CancelExecutionRequest(execution_id=started.id), metadata=auth(tenant)
    )
