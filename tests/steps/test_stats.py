"""GetWorkflowStats: executions by status, failure rate, duration percentiles and per-step
figures with the bottleneck, computed in SQL and confined to the tenant."""

from __future__ import annotations

from typing import Any

from grpc import aio

from tests.conftest import NewTenant, auth
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    http,
    start,
    step,
    transform,
    wait_until,
    workflow,
)
from tests.workflow_helpers import stub
from wfe.v1 import execution_pb2, workflow_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED


def slow_then_check(effects: Effects) -> dict[str, Any]:
    """input -> slow (an HTTP call of 0.3 s) -> shape -> check -> done, or, given `bad`,
    reject (an HTTP call answered 400, which fails the execution)."""
    return workflow(
        step("input", "input", "slow"),
        http("slow", "shape", effects.url(sleep=0.3), method="POST"),
        transform("shape", "check", {"bad": "$.input.bad"}),
        step(
            "check",
            "condition",
            config={
                "conditions": [{"condition": "$.shape.bad == false", "next": "done"}],
                "default": "reject",
            },
        ),
        http("reject", "done", effects.url(status=400), method="POST"),
        step("done", "output", config={"values": {"ok": True}}),
    )


async def stats_of(
    channel: aio.Channel, tenant: str, workflow_id: str, **fields: Any
) -> workflow_pb2.WorkflowStats:
    request = workflow_pb2.GetWorkflowStatsRequest(workflow_id=workflow_id, **fields)
    return (await stub(channel).GetWorkflowStats(request, metadata=auth(tenant))).stats


async def test_workflow_stats_count_executions_and_name_the_slowest_step(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("professional")
    definition = slow_then_check(effects)
    workflow_id = await active_workflow(channel, tenant, definition)
    runs = [await start(channel, tenant, workflow_id, {"bad": bad}) for bad in (False, False, True)]
    finished = [await wait_until(channel, tenant, run.id, patience=30) for run in runs]
    assert [f.status for f in finished] == [COMPLETED, COMPLETED, FAILED]

    stats = await stats_of(channel, tenant, workflow_id)

    assert (stats.executions, stats.completed, stats.failed, stats.running) == (3, 2, 1, 0)
    assert abs(stats.failure_rate - 1 / 3) < 1e-9
    assert stats.duration.count == 3 and stats.duration.p50_ms >= 300
    by_step = {s.step_id: s for s in stats.steps}
    assert [s.step_id for s in stats.steps] == ["input", "slow", "shape", "check", "reject", "done"]
    assert (by_step["check"].runs, by_step["check"].failures) == (3, 0)
    assert (by_step["reject"].runs, by_step["reject"].failures) == (1, 1)
    assert by_step["reject"].failure_rate == 1.0
    assert by_step["done"].runs == 2 and by_step["slow"].duration.p50_ms >= 300
    assert stats.bottleneck_step_id == "slow"


async def test_a_free_plan_gets_totals_without_per_step_figures(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, slow_then_check(effects))
    run = await start(channel, tenant, workflow_id, {"bad": False})
    await wait_until(channel, tenant, run.id, patience=30)

    stats = await stats_of(channel, tenant, workflow_id)

    assert (stats.executions, stats.completed) == (1, 1)
    assert list(stats.steps) == [] and stats.bottleneck_step_id == ""
