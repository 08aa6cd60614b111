"""The entry's inline steps run ahead of the I/O-bound step they lead to: the worker that
takes the entry from the I/O lane runs them in memory, then that step, and records them
all in that step's one transaction (or at its first checkpoint, if it runs longer), so a
start costs one task and one commit fewer. A crash in between loses nothing: the entry is
still due, and the step runs again with the same attempt key."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from grpc import aio
from sqlalchemy import event, select

from engine.engine import AttemptKey, Engine
from engine.tools import ToolRegistry
from foundation.settings import Settings
from persistence.models import StepAttempt
from service.executions.service import ExecutionService
from tenancy.context import CallIdentity, TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, ports, server_settings
from tests.effects_stub import Effects
from tests.engine.test_recovery import LostPublisher
from tests.engine.test_retries import calling
from tests.execution_helpers import active_workflow, eventually, get, wait_until
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED


async def started_unpublished(
    channel: aio.Channel, database: TenantDatabase, tenant: TenantId, document: dict[str, Any]
) -> tuple[str, LostPublisher]:
    """A started execution whose tasks were never sent: this test runs them itself."""
    workflow_id = await active_workflow(channel, tenant, document)
    publisher = LostPublisher()
    executions = ExecutionService(database, settings_for(), publisher)
    caller = CallIdentity(tenant, "user-1", frozenset())
    return (await executions.start(caller, workflow_id, {"n": 1})).id, publisher


def settings_for(effects: Effects | None = None) -> Settings:
    # A grace longer than two checkpoints: the sweeper leaves an entry alone that long,
    # so a worker may run it unclaimed (the tests' usual grace of 1 s is shorter).
    allowed = {"http_allowed_ports": ports(effects)} if effects is not None else {}
    # Checkpoints every 3 s: a test can stop a worker before its first one.
    return server_settings(
        dispatch_grace_seconds=10.0, lease_seconds=10.0, checkpoint_seconds=3.0, **allowed
    )


def engine_for(database: TenantDatabase, effects: Effects) -> Engine:
    settings = settings_for(effects)
    return Engine(database, ToolRegistry(settings), settings)


async def attempts(database: TenantDatabase, tenant: TenantId, execution_id: str) -> list[Any]:
    async with database.transaction(tenant) as session:
        rows = await session.execute(
            select(StepAttempt.step_id, StepAttempt.status, StepAttempt.task_id)
            .where(StepAttempt.execution_id == execution_id)
            .order_by(StepAttempt.started_at)
        )
        return [tuple(row) for row in rows.all()]


async def test_the_entry_and_the_call_it_leads_to_are_recorded_in_one_commit(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, effects: Effects
) -> None:
    tenant = TenantId(await new_tenant("enterprise"))
    execution_id, publisher = await started_unpublished(
        channel, database, tenant, calling(effects.url())
    )
    [entry] = publisher.lost
    assert (entry.step_id, entry.awaits_io) == ("input", True), "the entry goes to the I/O lane"
    engine = engine_for(database, effects)
    # The server's own jobs (its event feed, its notifications) commit on this engine too:
    # only the transactions that write the execution's steps count.
    writing: set[int] = set()
    commits: list[int] = []

    def executed(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(("UPDATE executions", "INSERT INTO step_attempts")):
            writing.add(id(connection))

    def committed(connection: Any) -> None:
        if id(connection) in writing:
            writing.discard(id(connection))
            commits.append(id(connection))

    sync_engine = database.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", executed)
    event.listen(sync_engine, "commit", committed)
    try:
        key = AttemptKey(tenant, execution_id, entry.step_id, entry.attempt)
        assert await engine.run_attempt(key, task_id="task-1", io_lane=True) == []
    finally:
        event.remove(sync_engine, "commit", committed)
        event.remove(sync_engine, "before_cursor_execute", executed)
        await engine.close()

    assert len(commits) == 1, "input, call and done in one transaction"
    done = await wait_until(channel, tenant, execution_id, patience=10)
    assert done.status == COMPLETED
    assert [s.status for s in done.steps] == [execution_pb2.STEP_STATUS_COMPLETED] * 3
    started = [s.start_time.ToDatetime() for s in done.steps]
    assert started == sorted(started), "each step recorded as of when it ran"
    assert effects.applied_count(execution_id, "call") == 1
    assert {task for _, _, task in await attempts(database, tenant, execution_id)} == {"task-1"}


async def test_a_call_longer_than_a_checkpoint_records_the_entry_at_its_first_checkpoint(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, effects: Effects
) -> None:
    tenant = TenantId(await new_tenant("enterprise"))
    gate = f"ahead-{uuid.uuid4().hex[:8]}"  # the effects stub outlives the test
    execution_id, publisher = await started_unpublished(
        channel, database, tenant, calling(effects.url(hold=gate))
    )
    [entry] = publisher.lost
    engine = engine_for(database, effects)
    key = AttemptKey(tenant, execution_id, entry.step_id, entry.attempt)
    running = asyncio.create_task(engine.run_attempt(key, task_id="task-2", io_lane=True))
    try:
        await eventually(lambda: effects.holding[gate] == 1, "the call is in flight")

        wanted = [execution_pb2.STEP_STATUS_COMPLETED, execution_pb2.STEP_STATUS_IN_PROGRESS]
        ends = time.monotonic() + 10
        while [s.status for s in (await get(channel, tenant, execution_id)).steps[:2]] != wanted:
            assert time.monotonic() < ends, "input completed and the call running, within 10 s"
            await asyncio.sleep(0.05)
        effects.release(gate)
        assert await running == []
    finally:
        effects.release(gate)
        await engine.close()
    done = await wait_until(channel, tenant, execution_id, patience=10)
    assert done.status == COMPLETED
    assert effects.applied_count(execution_id, "call") == 1


async def test_a_worker_lost_before_recording_leaves_the_entry_due_and_the_call_keeps_its_key(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, effects: Effects
) -> None:
    tenant = TenantId(await new_tenant("enterprise"))
    gate = f"lost-{uuid.uuid4().hex[:8]}"
    execution_id, publisher = await started_unpublished(
        channel, database, tenant, calling(effects.url(hold=gate))
    )
    [entry] = publisher.lost
    key = AttemptKey(tenant, execution_id, entry.step_id, entry.attempt)
    first = engine_for(database, effects)
    lost = asyncio.create_task(first.run_attempt(key, task_id="lost", io_lane=True))
    try:
        await eventually(lambda: effects.holding[gate] == 1, "the first call is in flight")
        lost.cancel()  # the worker dies before its first checkpoint: nothing was recorded
        await asyncio.gather(lost, return_exceptions=True)
        record = await get(channel, tenant, execution_id)
        assert {s.status for s in record.steps} == {execution_pb2.STEP_STATUS_PENDING}
        effects.release(gate)
        second = engine_for(database, effects)
        try:
            assert await second.run_attempt(key, task_id="again", io_lane=True) == []
        finally:
            await second.close()
    finally:
        effects.release(gate)
        await first.close()
    done = await wait_until(channel, tenant, execution_id, patience=10)
    assert done.status == COMPLETED
    assert effects.keys_of(execution_id) == [f"{execution_id}:call:1"]
    assert effects.applied_count(execution_id, "call") == 1
