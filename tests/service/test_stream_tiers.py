"""Live monitoring by tier: which topics, whether step outputs come, how many streams."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc import aio

from service.server import RunningServer
from tests.conftest import NewTenant, auth, error_info
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    http,
    start,
    step,
    three_steps,
    workflow,
)
from tests.stream_helpers import read_until, subscribe, watch
from tiers.plans import PLANS, Tier
from wfe.v1 import event_pb2, execution_pb2

COMPLETED = "workflow_execution_completed"


def ends(event: event_pb2.Event) -> bool:
    return event.type == COMPLETED


async def refusal(stream: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        await stream.read()  # type: ignore[attr-defined]
    return error_info(caught.value)


async def step_outputs_seen(channel: aio.Channel, tenant: str) -> list[bool]:
    """Whether each completed step's event carried its output, following one execution."""
    workflow_id = await active_workflow(channel, tenant, three_steps())
    started = await start(channel, tenant, workflow_id, {"name": "Ada"})
    stream = subscribe(channel, tenant, [f"execution:{started.id}"], after=0)
    found = await read_until(stream, ends)
    stream.cancel()
    assert found[-1].workflow_execution_completed.output["greeting"] == "Ada"
    return [
        event.workflow_step_completed.HasField("output")
        for event in found
        if event.type == "workflow_step_completed"
    ]


async def test_a_free_tenant_follows_its_executions_without_step_outputs(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    seen = await step_outputs_seen(channel, await new_tenant("free"))
    assert seen and not any(seen)


async def test_a_professional_tenant_gets_step_outputs(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    seen = await step_outputs_seen(channel, await new_tenant("professional"))
    assert seen and all(seen)


@pytest.mark.parametrize(
    ("tier", "topic", "required"),
    [
        ("free", "workflow:{id}", "full"),
        ("free", "all_executions", "advanced"),
        ("professional", "all_executions", "advanced"),
        ("professional", "all_workflows", "advanced"),
    ],
)
async def test_topics_beyond_the_plans_monitoring_are_a_tier_restriction(
    channel: aio.Channel, new_tenant: NewTenant, tier: str, topic: str, required: str
) -> None:
    tenant = await new_tenant(tier)
    name = topic.format(id=uuid.uuid4())
    code, reason, metadata = await refusal(subscribe(channel, tenant, [name], roles=["admin"]))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TIER_RESTRICTION")
    assert (metadata["feature"], metadata["required"], metadata["tier"]) == (
        "monitoring",
        required,
        tier,
    )


async def test_streams_beyond_the_plans_cap_are_refused_until_one_ends(
    channel: aio.Channel, server: RunningServer, new_tenant: NewTenant, effects: Effects
) -> None:
    """Free holds three streams; a WatchExecution counts as one; ending one frees its place."""
    tenant = await new_tenant("free")
    cap = PLANS[Tier.FREE].max_subscriptions
    held = [subscribe(channel, tenant, [f"execution:{uuid.uuid4()}"]) for _ in range(cap - 1)]
    await eventually(lambda: server.hub.registry.count(tenant) == cap - 1, "the streams open")
    slow = workflow(
        step("input", "input", "slow", name="Input"),
        http("slow", "done", effects.url(sleep=60)),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )
    started = await start(channel, tenant, await active_workflow(channel, tenant, slow))
    # A running execution's watch holds the last place.
    watching = executions(channel).WatchExecution(
        execution_pb2.WatchExecutionRequest(execution_id=started.id), metadata=auth(tenant)
    )
    await watching.read()  # the snapshot
    await eventually(lambda: server.hub.registry.count(tenant) == cap, "the watch counted")
    code, reason, metadata = await refusal(subscribe(channel, tenant, ["execution:x"]))
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TIER_RESTRICTION")
    assert (metadata["quota"], metadata["limit"], metadata["used"]) == (
        "max_subscriptions",
        str(cap),
        str(cap),
    )
    # Another tenant is not held to this tenant's count.
    other = await new_tenant("free")
    elsewhere = subscribe(channel, other, ["execution:x"])
    await eventually(lambda: server.hub.registry.count(other) == 1, "the other's stream open")
    elsewhere.cancel()
    held.pop().cancel()
    await eventually(lambda: server.hub.registry.count(tenant) < cap, "a place freed")
    again = subscribe(channel, tenant, ["execution:x"])
    await eventually(lambda: server.hub.registry.count(tenant) == cap, "a stream in its place")
    for stream in (*held, again, watching):
        stream.cancel()
    await executions(channel).CancelExecution(
        execution_pb2.CancelExecutionRequest(execution_id=started.id), metadata=auth(tenant)
    )


async def test_a_finished_execution_can_be_watched_at_the_cap(
    channel: aio.Channel, server: RunningServer, new_tenant: NewTenant
) -> None:
    """A watch of a finished execution is a snapshot, not a stream: it takes no place."""
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    started = await start(channel, tenant, workflow_id, {"name": "F"})
    following = subscribe(channel, tenant, [f"execution:{started.id}"], after=0)
    await read_until(following, ends)
    following.cancel()
    held = [subscribe(channel, tenant, ["execution:x"]) for _ in range(3)]
    await eventually(lambda: server.hub.registry.count(tenant) == 3, "the cap reached")
    [only] = await watch(channel, tenant, started.id)
    assert only.snapshot.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    for stream in held:
        stream.cancel()


async def test_an_enterprise_contract_raises_the_cap(
    channel: aio.Channel, server: RunningServer, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise", {"max_subscriptions": 2})
    held = [subscribe(channel, tenant, ["all_executions"], roles=["admin"]) for _ in range(2)]
    await eventually(lambda: server.hub.registry.count(tenant) == 2, "the cap reached")
    code, _, metadata = await refusal(subscribe(channel, tenant, ["execution:x"]))
    assert (code, metadata["limit"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "2")
    for stream in held:
        stream.cancel()
