"""Reading executions back: lists with filters and pages, and the retention purge."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from sqlalchemy import func, select, update

from engine.engine import Engine
from engine.tools import ToolRegistry
from persistence.models import Event, Execution
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info, server_settings, token
from tests.execution_helpers import (
    active_workflow,
    executions,
    start,
    three_steps,
    wait_until,
)
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


async def listed(
    channel: aio.Channel, tenant: str, **filters: object
) -> list[execution_pb2.Execution]:
    request = execution_pb2.ListExecutionsRequest(**filters)  # type: ignore[arg-type]
    return list(
        (await executions(channel).ListExecutions(request, metadata=auth(tenant))).executions
    )


async def test_list_filters_by_workflow_status_creator_and_time(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    first = await active_workflow(channel, tenant, three_steps())
    second = await active_workflow(channel, tenant, three_steps())
    by_ada = auth(tenant, bearer=token([tenant], subject="ada"))
    request = execution_pb2.StartExecutionRequest(workflow_id=first)
    ada = (await executions(channel).StartExecution(request, metadata=by_ada)).execution
    mine = await start(channel, tenant, second)
    for execution in (ada, mine):
        await wait_until(channel, tenant, execution.id)
    assert [e.id for e in await listed(channel, tenant)] == [mine.id, ada.id]
    assert [e.id for e in await listed(channel, tenant, workflow_id=first)] == [ada.id]
    assert [e.id for e in await listed(channel, tenant, created_by="ada")] == [ada.id]
    assert len(await listed(channel, tenant, statuses=[COMPLETED])) == 2
    assert await listed(channel, tenant, statuses=[execution_pb2.EXECUTION_STATUS_FAILED]) == []
    after_ada = ada.create_time.ToDatetime(tzinfo=UTC) + timedelta(microseconds=1)
    assert [e.id for e in await listed(channel, tenant, created_after=stamp(after_ada))] == [
        mine.id
    ]
    assert [e.id for e in await listed(channel, tenant, created_before=stamp(after_ada))] == [
        ada.id
    ]
    summary = (await listed(channel, tenant))[0]
    assert summary.total_steps == 3 and len(summary.steps) == 3
    assert not summary.steps[0].HasField("output")


async def test_list_pages_through_everything_once_and_refuses_a_changed_filter(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    ids = {(await start(channel, tenant, workflow_id)).id for _ in range(7)}
    seen: list[str] = []
    token_ = ""
    stub = executions(channel)
    while True:
        page = await stub.ListExecutions(
            execution_pb2.ListExecutionsRequest(page_size=3, page_token=token_),
            metadata=auth(tenant),
        )
        seen += [e.id for e in page.executions]
        token_ = page.next_page_token
        if not token_:
            break
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.ListExecutions(
                execution_pb2.ListExecutionsRequest(
                    page_size=3, page_token=token_, workflow_id=workflow_id
                ),
                metadata=auth(tenant),
            )
        assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert sorted(seen) == sorted(ids) and len(seen) == 7


async def test_the_purge_removes_finished_executions_past_the_plans_retention(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    free = await new_tenant("free")  # keeps 7 days
    pro = await new_tenant("professional")  # keeps 30 days
    kept, old = {}, {}
    for tenant in (free, pro):
        workflow_id = await active_workflow(channel, tenant, three_steps())
        old[tenant] = await wait_until(
            channel, tenant, (await start(channel, tenant, workflow_id)).id
        )
        kept[tenant] = await wait_until(
            channel, tenant, (await start(channel, tenant, workflow_id)).id
        )
        async with database.transaction(TenantId(tenant)) as session:
            await session.execute(
                update(Execution)
                .where(Execution.id == old[tenant].id)
                .values(completed_at=datetime.now(UTC) - timedelta(days=10))
            )
    engine = Engine(database, ToolRegistry(server_settings()), server_settings())
    assert await engine.purge() >= 1
    assert [e.id for e in await listed(channel, free)] == [kept[free].id]
    assert {e.id for e in await listed(channel, pro)} == {kept[pro].id, old[pro].id}
    with pytest.raises(aio.AioRpcError) as caught:
        await executions(channel).GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=old[free].id), metadata=auth(free)
        )
    assert error_info(caught.value)[1] == "EXECUTION_NOT_FOUND"
    async with database.transaction(TenantId(free)) as session:
        left = await session.scalar(
            select(func.count()).select_from(Event).where(Event.execution_id == old[free].id)
        )
    assert left == 0


async def test_an_unknown_execution_is_not_found(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    with pytest.raises(aio.AioRpcError) as caught:
        await executions(channel).GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=str(uuid.uuid4())),
            metadata=auth(tenant),
        )
    assert error_info(caught.value)[:2] == (grpc.StatusCode.NOT_FOUND, "EXECUTION_NOT_FOUND")
