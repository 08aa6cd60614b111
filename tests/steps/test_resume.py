"""Retrying an execution that failed inside a loop or a parallel starts that loop or parallel
again: its children's state belongs to it."""

from __future__ import annotations

from grpc import aio

from tests.conftest import NewTenant, auth
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    executions,
    http,
    start,
    step,
    to_dict,
    wait_until,
    workflow,
)
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED


async def test_retrying_a_failure_inside_a_loop_runs_the_loop_again_and_completes(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("professional")
    definition = workflow(
        step("input", "input", "each"),
        step("each", "loop", "done", config={"over": "$.input.items", "body": "call"}),
        # Each iteration's first attempt is answered 503; no retry policy: the step fails.
        http("call", "each", effects.url(fail_first=1), method="POST"),
        step("done", "output", config={"values": {"count": "$.each.count"}}),
    )
    workflow_id = await active_workflow(channel, tenant, definition)
    started = await start(channel, tenant, workflow_id, {"items": ["only"]})
    failed = await wait_until(channel, tenant, started.id, patience=30)
    assert failed.status == FAILED
    assert failed.error.step_id == "call"

    await executions(channel).RetryExecution(
        execution_pb2.RetryExecutionRequest(execution_id=started.id), metadata=auth(tenant)
    )
    done = await wait_until(channel, tenant, started.id, patience=30)

    assert done.status == COMPLETED, done.error_detail
    assert to_dict(done.result) == {"count": 1}
    # The iteration's step ran again as its attempt 2 (its first is the failed one).
    assert effects.keys_of(started.id) == [f"{started.id}:call@each:0:{n}" for n in (1, 2)]
