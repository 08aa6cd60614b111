"""Concurrent starts of one tenant share transactions (group commit), yet each caller gets
its own answer: a refused start takes nothing with it, a repeated request id answers with
the execution its first call made, and the counters end exact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from sqlalchemy import event

from engine import control, events
from engine.dispatch import Publisher
from engine.rows import ExecutionRow
from engine.units import Unit, timing_of
from foundation.errors import QuotaExhausted
from service.executions.batching import GroupCommit
from service.workflows import service as workflows
from tenancy import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info, server_settings
from tests.engine.test_run_limits import statuses
from tests.execution_helpers import active_workflow, start, three_steps, wait_until
from tests.tiers.test_plan_limits import get_tenant
from wfe.v1 import execution_pb2, workflow_pb2, workflow_pb2_grpc

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED


async def outcome(call: asyncio.Future[execution_pb2.Execution]) -> str:
    """The execution id a start answered with, or its error's code and reason."""
    try:
        return (await call).id
    except aio.AioRpcError as error:
        code, reason, _ = error_info(error)
        return f"{code.name}/{reason}"


async def test_concurrent_starts_each_get_their_own_answer_and_the_counters_end_exact(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise", {"max_executions_per_day": 6})
    workflow_id = await active_workflow(channel, tenant, three_steps())
    repeated = uuid.uuid4().hex
    calls = [
        *(start(channel, tenant, workflow_id, {"name": f"n{i}"}) for i in range(10)),
        *(start(channel, tenant, workflow_id, {"name": "again"}, repeated) for _ in range(3)),
        *(start(channel, tenant, str(uuid.uuid4())) for _ in range(3)),  # no such workflow
    ]
    answers = await asyncio.gather(*(outcome(asyncio.ensure_future(c)) for c in calls))
    plain, same_id, unknown = answers[:10], answers[10:13], answers[13:]
    assert unknown == ["NOT_FOUND/WORKFLOW_NOT_FOUND"] * 3
    assert len(set(same_id)) == 1  # one execution for the three calls, or one refusal
    started = {a for a in plain + same_id if not a.startswith("RESOURCE_EXHAUSTED")}
    refused = [a for a in plain + same_id if a.startswith("RESOURCE_EXHAUSTED")]
    assert len(started) == 6  # the day's quota, exactly
    assert set(refused) == {"RESOURCE_EXHAUSTED/TIER_RESTRICTION"}
    assert len(await statuses(channel, tenant)) == 6  # a refusal stored nothing
    assert (await get_tenant(channel, tenant)).usage.executions_today == 6
    for execution_id in started:
        done = await wait_until(channel, tenant, execution_id, patience=60)
        assert done.status == COMPLETED


async def test_a_start_refused_in_a_shared_transaction_leaves_the_others_started(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    calls = [
        start(channel, tenant, workflow_id if i % 2 else str(uuid.uuid4()), {"name": f"n{i}"})
        for i in range(16)
    ]
    answers = await asyncio.gather(*(outcome(asyncio.ensure_future(c)) for c in calls))
    assert answers[0::2] == ["NOT_FOUND/WORKFLOW_NOT_FOUND"] * 8
    assert all(not a.startswith(grpc.StatusCode.NOT_FOUND.name) for a in answers[1::2])
    for execution_id in answers[1::2]:
        done = await wait_until(channel, tenant, execution_id, patience=60)
        assert done.status == COMPLETED
        assert dict(done.result)["greeting"].startswith("n")


def requiring(name: str, kind: str) -> dict[str, object]:
    return {"type": "object", "properties": {name: {"type": kind}}, "required": [name]}


async def test_a_start_checks_its_input_against_the_workflows_version_of_now(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """The server keeps the definition a start last read, and checks the next start's
    input against it first: once the workflow has changed, the new schema decides."""
    tenant = await new_tenant("professional")
    document = three_steps()
    document["input_schema"] = requiring("n", "integer")
    workflow_id = await active_workflow(channel, tenant, document)
    await start(channel, tenant, workflow_id, {"n": 1, "name": "a"})  # kept by the server
    proposed = workflow_pb2.Workflow(id=workflow_id)
    proposed.input_schema.update(requiring("name", "string"))
    request = workflow_pb2.UpdateWorkflowRequest(workflow=proposed)
    request.update_mask.paths.append("input_schema")
    await workflow_pb2_grpc.WorkflowServiceStub(channel).UpdateWorkflow(
        request, metadata=auth(tenant)
    )
    started = await start(channel, tenant, workflow_id, {"name": "b"})  # the old one refuses
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED
    answer = await outcome(asyncio.ensure_future(start(channel, tenant, workflow_id, {"n": 1})))
    assert answer == "INVALID_ARGUMENT/INVALID_INPUT"


def batched_starts(
    database: TenantDatabase, engine: Publisher, workflow_id: str
) -> tuple[GroupCommit, Callable[[Unit], Awaitable[ExecutionRow]]]:
    """A group commit as the service makes it, and one start of the workflow to run in it."""
    batches = GroupCommit(database, timing_of(server_settings()), engine, control.batch_ledger)

    async def work(unit: Unit) -> ExecutionRow:
        workflow = await workflows.get(unit.session, workflow_id)
        return await control.start(
            unit, "tester", workflow.id, workflow.version, workflow.definition, {"name": "x"}
        )

    return batches, work


async def test_a_batch_of_starts_takes_its_quota_counters_once(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, engine: Publisher
) -> None:
    tenant = await new_tenant("enterprise", {"max_executions_per_day": 5})
    workflow_id = await active_workflow(channel, tenant, three_steps())
    batches, work = batched_starts(database, engine, workflow_id)

    counter_statements: list[str] = []

    def seen(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "usage_counters" in statement:
            counter_statements.append(statement)

    sync_engine = database.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        # Eight calls made in one turn of the loop: they go in one transaction.
        answers = await asyncio.gather(
            *(batches.run(TenantId(tenant), work) for _ in range(8)), return_exceptions=True
        )
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)

    started = [a for a in answers if isinstance(a, ExecutionRow)]
    refused = [a for a in answers if isinstance(a, QuotaExhausted)]
    assert (len(started), len(refused)) == (5, 3)
    assert refused[0].metadata["quota"] == "max_executions_per_day"
    # One statement locks and reads both counters; one adds to each: not two per start.
    assert len(counter_statements) == 3, counter_statements
    assert (await get_tenant(channel, tenant)).usage.executions_today == 5
    for execution in started:
        done = await wait_until(channel, tenant, execution.id, patience=60)
        assert done.status == COMPLETED


async def test_a_batch_sets_the_tenant_takes_the_lock_and_wakes_readers_once_for_all_its_calls(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, engine: Publisher
) -> None:
    """Each call's savepoint goes on in the batch's transaction: it does not set the tenant
    or take the admission lock again, and its release is not a commit, so readers are woken
    once, after the batch commits, even when a refused call rolled back in between."""
    tenant = await new_tenant("enterprise", {"max_executions_per_day": 3})
    workflow_id = await active_workflow(channel, tenant, three_steps())
    batches, work = batched_starts(database, engine, workflow_id)

    statements: list[str] = []
    wakes: list[bool] = []

    def seen(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sync_engine = database.engine.sync_engine
    remove = events.on_commit(database, lambda _info: wakes.append(True))
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        answers = await asyncio.gather(
            *(batches.run(TenantId(tenant), work) for _ in range(5)), return_exceptions=True
        )
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
        remove()

    assert sum(isinstance(answer, ExecutionRow) for answer in answers) == 3
    assert sum(isinstance(answer, QuotaExhausted) for answer in answers) == 2
    assert len([s for s in statements if s.startswith("SAVEPOINT")]) == 5, "one batch"
    assert wakes == [True], "one commit that wrote events"
    if database.is_postgresql:
        assert len([s for s in statements if "set_config('app.tenant_id'" in s]) == 1
        # Taken once; and again only by the call after a refused one, whose savepoint's
        # rollback forgot it (a lock taken inside a savepoint goes with its rollback).
        locks = [s for s in statements if "pg_advisory_xact_lock" in s]
        assert len(locks) == 2, "three starts, then two refused: the fifth takes it again"
