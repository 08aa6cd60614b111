"""The tenant's plan while executions run: concurrency, daily quota, time limit, step types."""

from __future__ import annotations

import asyncio
import itertools
import time

import grpc
import pytest
from grpc import aio

from service.tenants import service as tenants
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info
from tests.effects_stub import Effects
from tests.engine.test_retries import calling
from tests.execution_helpers import (
    active_workflow,
    executions,
    get,
    start,
    three_steps,
    wait_until,
)
from tests.workflow_helpers import definition
from wfe.v1 import execution_pb2, tenant_pb2, tenant_pb2_grpc

QUEUED = execution_pb2.EXECUTION_STATUS_QUEUED
RUNNING = frozenset(
    {execution_pb2.EXECUTION_STATUS_PENDING, execution_pb2.EXECUTION_STATUS_IN_PROGRESS}
)


async def statuses(channel: aio.Channel, tenant: str) -> list[int]:
    listed = await executions(channel).ListExecutions(
        execution_pb2.ListExecutionsRequest(page_size=200), metadata=auth(tenant)
    )
    return [e.status for e in listed.executions]


async def concurrent_in_use(channel: aio.Channel, tenant: str) -> int:
    response = await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
        tenant_pb2.GetTenantRequest(), metadata=auth(tenant)
    )
    return int(response.tenant.usage.concurrent_executions)


async def test_over_the_concurrency_limit_executions_queue_and_are_admitted_in_order(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")  # 2 concurrent executions
    workflow_id = await active_workflow(channel, tenant, calling(effects.url(sleep=1)))
    started = [await start(channel, tenant, workflow_id) for _ in range(4)]
    assert [s.status in RUNNING for s in started] == [True, True, False, False]
    assert started[2].status == QUEUED and started[3].status == QUEUED
    most_running = 0
    ends = time.monotonic() + 30
    while time.monotonic() < ends:
        now = await statuses(channel, tenant)
        most_running = max(most_running, sum(1 for s in now if s in RUNNING))
        if all(s == execution_pb2.EXECUTION_STATUS_COMPLETED for s in now):
            break
        await asyncio.sleep(0.05)
    assert most_running == 2
    finished = [await get(channel, tenant, s.id) for s in started]
    assert all(f.status == execution_pb2.EXECUTION_STATUS_COMPLETED for f in finished)
    first_free = min(f.complete_time.ToDatetime() for f in finished[:2])
    assert all(f.start_time.ToDatetime() >= first_free for f in finished[2:])
    assert await concurrent_in_use(channel, tenant) == 0


async def test_queued_executions_are_admitted_first_come_first_served(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("enterprise", {"max_concurrent_executions": 1})
    workflow_id = await active_workflow(channel, tenant, calling(effects.url(sleep=0.3)))
    started = [await start(channel, tenant, workflow_id) for _ in range(4)]
    finished = [await wait_until(channel, tenant, s.id) for s in started]
    runs = [(f.start_time.ToDatetime(), f.complete_time.ToDatetime()) for f in finished]
    for (_, earlier_end), (later_start, _) in itertools.pairwise(runs):
        assert earlier_end <= later_start


async def test_parallel_starts_never_take_more_slots_than_the_plan_has(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("enterprise", {"max_concurrent_executions": 3})
    workflow_id = await active_workflow(channel, tenant, calling(effects.url(sleep=1)))
    started = await asyncio.gather(*(start(channel, tenant, workflow_id) for _ in range(12)))
    assert sum(1 for s in started if s.status in RUNNING) == 3
    assert sum(1 for s in started if s.status == QUEUED) == 9
    for execution in started:
        done = await wait_until(channel, tenant, execution.id, patience=60)
        assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert await concurrent_in_use(channel, tenant) == 0


async def test_the_daily_quota_refuses_with_the_reset_time_and_stores_nothing(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise", {"max_executions_per_day": 2})
    workflow_id = await active_workflow(channel, tenant, three_steps())
    for _ in range(2):
        await start(channel, tenant, workflow_id)
    with pytest.raises(aio.AioRpcError) as caught:
        await start(channel, tenant, workflow_id)
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TIER_RESTRICTION")
    assert metadata["limit"] == "2" and metadata["quota"] == "max_executions_per_day"
    assert metadata["resets_at"].endswith("T00:00:00+00:00")
    assert "resets at" in caught.value.details()
    assert len(await statuses(channel, tenant)) == 2


async def test_an_execution_past_the_plans_maximum_time_fails_with_timeout(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("enterprise", {"max_execution_seconds": 1})
    workflow_id = await active_workflow(channel, tenant, calling(effects.url(sleep=4)))
    started = await start(channel, tenant, workflow_id)
    assert started.deadline.ToDatetime() > started.create_time.ToDatetime()
    done = await wait_until(channel, tenant, started.id)
    assert done.status == execution_pb2.EXECUTION_STATUS_FAILED
    assert done.error.code == "timeout"
    assert "maximum time of 1 s" in done.error_detail
    assert done.steps[1].status == execution_pb2.STEP_STATUS_FAILED
    elapsed = done.complete_time.ToDatetime() - done.start_time.ToDatetime()
    assert elapsed.total_seconds() < 4


async def test_a_workflow_beyond_todays_plan_does_not_start(
    channel: aio.Channel, new_tenant: NewTenant, admin_database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, definition(advanced=True))
    async with admin_database.transaction(None) as session:
        await tenants.set_tier(session, tenant, "free")
    with pytest.raises(aio.AioRpcError) as caught:
        await start(channel, tenant, workflow_id, {"email": "a@example.com"})
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TIER_RESTRICTION")
    assert metadata["step_type"] == "wait"
