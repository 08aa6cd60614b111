"""Answers stay under the message size limit, however large inputs and outputs are.

An execution whose input every step copies on holds several times the largest input a
plan admits; a list shows it without those parts, and a FULL view leaves out what does
not fit and says so.
"""

from __future__ import annotations

from typing import Any

from grpc import aio

from tests.conftest import NewTenant, auth, server_settings
from tests.execution_helpers import (
    active_workflow,
    executions,
    start,
    step,
    transform,
    wait_until,
    workflow,
)
from tiers import PLANS, Tier
from wfe.v1 import execution_pb2

LIMIT = server_settings().grpc_max_message_bytes
# The largest input an Enterprise plan admits (1 MiB without a tier cap), less the wrapping.
BLOB = getattr(PLANS[Tier.ENTERPRISE], "max_input_bytes", 1024 * 1024) - 64


def copying_workflow() -> dict[str, Any]:
    """input -> copy1 -> copy2 -> done: each step's output, and the result, is the input."""
    return workflow(
        step("input", "input", "copy1"),
        transform("copy1", "copy2", {"blob": "$.input.blob"}),
        transform("copy2", "done", {"blob": "$.copy1.blob"}),
        step("done", "output", config={"values": {"blob": "$.copy2.blob"}}),
    )


async def large_execution(channel: aio.Channel, tenant: str, workflow_id: str) -> str:
    started = await start(channel, tenant, workflow_id, {"blob": "x" * BLOB})
    done = await wait_until(channel, tenant, started.id)
    assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED, done.error
    return str(started.id)


async def test_large_executions_are_listed_and_shown_within_the_message_limit(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, copying_workflow())
    ids = [await large_execution(channel, tenant, workflow_id) for _ in range(2)]
    stub = executions(channel)

    full = (
        await stub.GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=ids[0]), metadata=auth(tenant)
        )
    ).execution
    assert full.ByteSize() < LIMIT
    assert full.omitted_fields and all(
        path.startswith("steps[") and path.endswith("].output") for path in full.omitted_fields
    )
    assert len(full.input["blob"]) == BLOB
    kept = [s for s in full.steps if s.HasField("output")]
    assert all(len(s.output.struct_value["blob"]) == BLOB for s in kept)

    basic = (
        await stub.GetExecution(
            execution_pb2.GetExecutionRequest(
                execution_id=ids[0], view=execution_pb2.EXECUTION_VIEW_BASIC
            ),
            metadata=auth(tenant),
        )
    ).execution
    assert not basic.HasField("input") and not basic.HasField("result")
    assert not any(s.HasField("output") for s in basic.steps) and not basic.omitted_fields
    assert basic.ByteSize() < 4096

    listed = await stub.ListExecutions(execution_pb2.ListExecutionsRequest(), metadata=auth(tenant))
    assert [e.id for e in listed.executions] == list(reversed(ids))
    assert all(not e.HasField("input") for e in listed.executions)
    assert listed.executions[0].status == execution_pb2.EXECUTION_STATUS_COMPLETED

    seen, page_token = [], ""
    while True:
        page = await stub.ListExecutions(
            execution_pb2.ListExecutionsRequest(
                view=execution_pb2.EXECUTION_VIEW_FULL, page_token=page_token
            ),
            metadata=auth(tenant),
        )
        assert page.ByteSize() < LIMIT
        assert all(len(e.input["blob"]) == BLOB for e in page.executions)
        seen += [e.id for e in page.executions]
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == list(reversed(ids))
