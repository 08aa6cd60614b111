"""Hostile input schemas through the real server, on every backend.

Validate, Create and Start each meet the schema: none of them may fetch what it names,
spend more than a moment on its regexes, or answer INTERNAL. A definition stored before
today's rules (a workflow's, or an execution's copy for a rerun) is written straight into
the database, as an old row would be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select, update

from persistence.models import Execution, Workflow
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info
from tests.execution_helpers import (
    active_workflow,
    executions,
    start,
    step,
    struct,
    wait_until,
    workflow,
)
from tests.servicers.test_workflow_service import violations
from tests.workflow_helpers import create, message, stub
from tests.workflows.test_hostile_schemas import (
    EVIL,
    NO_MATCH,
    CountingServer,
    counting_server,
    leaving_schemas,
)
from wfe.v1 import execution_pb2, workflow_pb2

T = TypeVar("T")
BOUND = 2.0  # seconds; RE2 answers in milliseconds, a backtracking engine in minutes


@pytest.fixture
def witness() -> Iterator[CountingServer]:
    with counting_server() as server:
        yield server


def document(schema: dict[str, Any]) -> dict[str, Any]:
    return workflow(
        step("input", "input", "done"),
        step("done", "output", config={"values": {}}),
        schema=schema,
    )


async def timed(call: Awaitable[T]) -> T:
    began = time.monotonic()
    result = await call
    assert time.monotonic() - began < BOUND
    return result


async def refused(call: Awaitable[object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        await timed(call)
    return caught.value


async def legacy_workflow(
    channel: aio.Channel, database: TenantDatabase, tenant: str, schema: dict[str, Any]
) -> str:
    """An active workflow whose stored input_schema was saved before today's rules."""
    workflow_id = await active_workflow(channel, tenant, document({"type": "object"}))
    async with database.transaction(TenantId(tenant)) as session:
        stored = await session.scalar(select(Workflow.definition).where(Workflow.id == workflow_id))
        assert stored is not None
        changed = {**stored, "input_schema": schema}
        await session.execute(
            update(Workflow).where(Workflow.id == workflow_id).values(definition=changed)
        )
    return workflow_id


async def executions_of(database: TenantDatabase, tenant: str) -> int:
    async with database.transaction(TenantId(tenant)) as session:
        return int(await session.scalar(select(func.count()).select_from(Execution)) or 0)


async def test_a_schema_naming_a_server_or_a_file_is_never_fetched(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, witness: CountingServer
) -> None:
    tenant = await new_tenant("free")
    for schema, path in leaving_schemas(witness.server_address[1]):
        answer = await timed(
            stub(channel).ValidateWorkflow(
                workflow_pb2.ValidateWorkflowRequest(workflow=message(document(schema))),
                metadata=auth(tenant),
            )
        )
        assert ("invalid_input_schema", f"input_schema.{path}") in {
            (issue.code, issue.field) for issue in answer.errors
        }
        error = await refused(create(channel, tenant, document(schema)))
        code, reason, _ = error_info(error)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
        assert dict(violations(error))[f"input_schema.{path}"].startswith("invalid_input_schema")

        workflow_id = await legacy_workflow(channel, database, tenant, schema)
        error = await refused(start(channel, tenant, workflow_id, {"a": "x"}))
        code, reason, metadata = error_info(error)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
        assert metadata["subject"] == "input_schema"
        shown = f"{answer} {error.details()} {violations(error)}"
        assert "root:" not in shown  # no line of /etc/passwd
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant)
    )
    assert len(listed.workflows) == len(leaving_schemas(0))  # only the legacy rows
    assert await executions_of(database, tenant) == 0
    assert witness.requests == 0


async def test_a_catastrophic_pattern_answers_at_once_while_health_answers(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")  # whose inputs may be long: 1 MiB
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": EVIL}},
        "patternProperties": {EVIL: {"type": "string"}},
    }
    health = health_pb2_grpc.HealthStub(channel)
    answer, _ = await asyncio.gather(
        timed(
            stub(channel).ValidateWorkflow(
                workflow_pb2.ValidateWorkflowRequest(workflow=message(document(schema))),
                metadata=auth(tenant),
            )
        ),
        timed(health.Check(health_pb2.HealthCheckRequest())),
    )
    assert answer.valid
    workflow_id = await timed(active_workflow(channel, tenant, document(schema)))
    for text in (NO_MATCH, "a" * 400_000 + "!"):
        error, checked = await asyncio.gather(
            refused(start(channel, tenant, workflow_id, {"name": text, text: 1})),
            timed(health.Check(health_pb2.HealthCheckRequest())),
        )
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        assert error_info(error)[1] == "INVALID_INPUT"
        assert {field for field, _ in violations(error)} == {"input.name"}
    started = await timed(start(channel, tenant, workflow_id, {"name": "aaaa", "aaa": "b"}))
    assert started.id


async def test_an_unresolvable_local_reference_is_refused_never_internal(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    error = await refused(create(channel, tenant, document(schema)))
    assert error_info(error)[1] == "INVALID_WORKFLOW_DEFINITION"
    assert dict(violations(error))["input_schema.properties.a.$ref"] == (
        "invalid_input_schema: $ref '#/$defs/missing' names nothing in this schema"
    )
    workflow_id = await legacy_workflow(channel, database, tenant, schema)
    error = await refused(start(channel, tenant, workflow_id, {"a": 1}))
    code, reason, _ = error_info(error)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert "names nothing in this schema" in error.details()
    assert await executions_of(database, tenant) == 0


async def test_a_rerun_of_an_execution_with_a_legacy_schema_fetches_nothing(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, witness: CountingServer
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, document({"type": "object"}))
    finished = await wait_until(channel, tenant, (await start(channel, tenant, workflow_id)).id)
    schema, _ = leaving_schemas(witness.server_address[1])[0]
    async with database.transaction(TenantId(tenant)) as session:
        stored = await session.scalar(
            select(Execution.definition).where(Execution.id == finished.id)
        )
        assert stored is not None
        await session.execute(
            update(Execution)
            .where(Execution.id == finished.id)
            .values(definition={**stored, "input_schema": schema})
        )
    request = execution_pb2.RerunExecutionRequest(
        execution_id=finished.id, from_step="done", input_patch=struct({"a": "x"})
    )
    error = await refused(executions(channel).RerunExecution(request, metadata=auth(tenant)))
    code, reason, metadata = error_info(error)
    assert (code, reason, metadata["subject"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_INPUT",
        "input_schema",
    )
    assert await executions_of(database, tenant) == 1
    assert witness.requests == 0
