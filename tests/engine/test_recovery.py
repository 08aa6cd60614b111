"""Nothing lost, nothing stuck: the outbox, the sweeper and lease takeover, through the real stack.

Here the faults are written straight into the database (a publish that never happened,
a worker that vanished mid-step); `test_faults.py` causes them with real processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from grpc import aio
from sqlalchemy import delete, func, select, update

from engine.dispatch import TaskRef
from engine.engine import AttemptKey, Engine
from engine.tools import ToolRegistry
from engine.units import utcnow
from persistence.models import Dispatch, Event, Execution, StepAttempt
from service.executions.service import ExecutionService
from tenancy.context import CallIdentity, TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, server_settings
from tests.effects_stub import Effects
from tests.engine.test_retries import calling
from tests.execution_helpers import active_workflow, three_steps, wait_until
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED


class LostPublisher:
    """A publisher whose messages never reach the broker, as when the server dies after commit."""

    def __init__(self) -> None:
        self.lost: list[TaskRef] = []

    def publish(self, refs: Sequence[TaskRef]) -> None:
        self.lost.extend(refs)


async def start_unpublished(database: TenantDatabase, tenant: str, workflow_id: str) -> str:
    """Start an execution as the server does, but never publish its first task."""
    publisher = LostPublisher()
    executions = ExecutionService(database, server_settings(), publisher)
    caller = CallIdentity(TenantId(tenant), "user-1", frozenset())
    execution = await executions.start(caller, workflow_id, {"name": "lost"})
    assert publisher.lost, "the start made a step due"
    return execution.id


async def test_a_start_whose_publish_was_lost_is_picked_up_by_the_sweeper(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    execution_id = await start_unpublished(database, tenant, workflow_id)
    done = await wait_until(channel, tenant, execution_id, patience=20)
    assert done.status == COMPLETED
    assert dict(done.result) == {"greeting": "lost"}


async def test_a_step_whose_worker_vanished_is_taken_over_with_the_same_idempotency_key(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, calling(effects.url()))
    execution_id = await start_unpublished(database, tenant, workflow_id)
    past = utcnow() - timedelta(seconds=5)
    async with database.transaction(TenantId(tenant)) as session:
        # As if the input step ran and a worker then claimed `call` and died at once.
        execution = await session.get(Execution, execution_id)
        assert execution is not None
        await session.execute(
            update(StepAttempt)
            .where(StepAttempt.execution_id == execution_id)
            .values(status="completed", started_at=past, finished_at=past)
        )
        await session.execute(delete(Dispatch).where(Dispatch.execution_id == execution_id))
        execution.outputs = {"input": {}}
        execution.status = "in_progress"
        session.add(
            StepAttempt(
                execution_id=execution_id,
                step_id="call",
                attempt=1,
                status="running",
                claims=1,
                started_at=past,
                due_at=past,
            )
        )
        session.add(
            Dispatch(
                execution_id=execution_id,
                step_id="call",
                attempt=1,
                tenant_id=tenant,
                state="running",
                fire_at=past,
                lease_until=past,
                published_at=past,
                publishes=1,
            )
        )
    done = await wait_until(channel, tenant, execution_id, patience=20)
    assert done.status == COMPLETED, done.error_detail
    assert effects.keys_of(execution_id) == [f"{execution_id}:call:1"]
    assert done.steps[1].attempts == 1
    async with database.transaction(TenantId(tenant)) as session:
        claims = await session.scalar(
            select(StepAttempt.claims).where(
                StepAttempt.execution_id == execution_id, StepAttempt.step_id == "call"
            )
        )
        left = await session.scalar(
            select(func.count()).select_from(Dispatch).where(Dispatch.execution_id == execution_id)
        )
    assert claims == 2 and left == 0


async def test_delivering_a_finished_attempt_again_changes_nothing(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    execution_id = await start_unpublished(database, tenant, workflow_id)
    done = await wait_until(channel, tenant, execution_id, patience=20)
    assert done.status == COMPLETED

    async def event_count() -> int:
        async with database.transaction(TenantId(tenant)) as session:
            count = await session.scalar(
                select(func.count()).select_from(Event).where(Event.execution_id == execution_id)
            )
            return int(count or 0)

    before = await event_count()
    engine = Engine(database, ToolRegistry(server_settings()), server_settings())
    for step_id in ("input", "shape", "done"):
        assert (
            await engine.run_attempt(AttemptKey(TenantId(tenant), execution_id, step_id, 1)) == []
        )
    assert await event_count() == before
    again = await wait_until(channel, tenant, execution_id)
    assert again == done
