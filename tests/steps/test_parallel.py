"""`parallel` steps: branches run at once and the join fires once: `all`, `any` (the other
branches are cancelled), `n_of_m`; a failing branch fails the execution only when the join
can no longer be met."""

from __future__ import annotations

from typing import Any

from grpc import aio
from sqlalchemy import select

from persistence.models import Event
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    attempts_of,
    eventually,
    get,
    http,
    start,
    step,
    to_dict,
    transform,
    wait_until,
    workflow,
)
from tests.steps.test_loops import gate, io_capacity
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED
STEP_CANCELLED = execution_pb2.STEP_STATUS_CANCELLED
STEP_COMPLETED = execution_pb2.STEP_STATUS_COMPLETED


def fanning(branches: list[dict[str, Any]], starts: list[str], **join: Any) -> dict[str, Any]:
    """input -> fan (parallel over `starts`) -> after -> done; `branches` are the branch steps."""
    return workflow(
        step("input", "input", "fan"),
        step("fan", "parallel", "after", config={"branches": starts, **join}),
        *branches,
        transform("after", "done", {"succeeded": "$.fan.succeeded", "failed": "$.fan.failed"}),
        step("done", "output", config={"values": {"fan": "$.fan", "after": "$.after"}}),
    )


def held_branch(name: str, url: str, **kw: Any) -> list[dict[str, Any]]:
    """A branch of two steps: `name` (POST {branch: name} to `url`) -> `name`_out."""
    return [
        http(name, f"{name}_out", url, method="POST", arguments={"body": {"branch": name}}, **kw),
        transform(f"{name}_out", None, {"branch": f"$.{name}.body.echo.branch"}),
    ]


def step_status(execution: execution_pb2.Execution, step_id: str) -> int:
    return next(s.status for s in execution.steps if s.step_id == step_id)


async def events_named(
    database: TenantDatabase, tenant: str, execution_id: str, kind: str
) -> list[dict[str, Any]]:
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.scalars(
            select(Event)
            .where(Event.execution_id == execution_id, Event.type == kind)
            .order_by(Event.id)
        )
        return [row.payload for row in rows]


async def test_an_all_join_fires_once_when_every_branch_is_done(
    channel: aio.Channel,
    new_tenant: NewTenant,
    effects: Effects,
    database: TenantDatabase,
    test_database: ThrowawayDatabase,
) -> None:
    tenant = await new_tenant("professional")
    held = gate()
    names = [f"b{i}" for i in range(4)]
    branches = [s for name in names for s in held_branch(name, effects.url(hold=held))]
    workflow_id = await active_workflow(channel, tenant, fanning(branches, names, join="all"))
    started = await start(channel, tenant, workflow_id)
    try:
        at_once = min(4, io_capacity(test_database))
        await eventually(lambda: effects.holding[held] >= at_once, f"{at_once} branches held")
        waiting = await get(channel, tenant, started.id)
        assert waiting.status == execution_pb2.EXECUTION_STATUS_IN_PROGRESS
        assert await attempts_of(database, tenant, started.id, "after") == []
    finally:
        effects.release(held)  # every held branch goes on at the same instant
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    fan = to_dict(done.result)["fan"]
    assert fan == {
        "join": "all",
        "branches": {name: {"branch": name} for name in names},
        "succeeded": 4,
        "failed": 0,
    }
    assert to_dict(done.result)["after"] == {"succeeded": 4, "failed": 0}
    # The join fired once: one completed attempt of the parallel, one run of what follows.
    fan_attempts = await attempts_of(database, tenant, started.id, "fan")
    assert [a.status for a in fan_attempts] == ["completed"]
    assert [a.status for a in await attempts_of(database, tenant, started.id, "after")] == [
        "completed"
    ]
    completed = await events_named(database, tenant, started.id, "workflow_step_completed")
    assert [p["step_id"] for p in completed].count("fan") == 1
    assert [p["step_id"] for p in completed].count("after") == 1
    for name in names:
        assert [a.status for a in await attempts_of(database, tenant, started.id, name)] == [
            "completed"
        ]
        assert step_status(done, name) == STEP_COMPLETED


async def test_an_any_join_completes_with_the_quick_branch_and_cancels_the_other(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    held = gate()
    branches = [
        transform("quick", None, {"won": True}),
        *held_branch("slow", effects.url(hold=held)),
    ]
    document = fanning(branches, ["quick", "slow"], join="any")
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    try:
        done = await wait_until(channel, tenant, started.id, patience=30)
        assert done.status == COMPLETED, to_dict(done)
        fan = to_dict(done.result)["fan"]
        assert fan["join"] == "any"
        assert fan["branches"] == {"quick": {"won": True}}
        assert (fan["succeeded"], fan["failed"]) == (1, 0)
        slow = await attempts_of(database, tenant, started.id, "slow")
        assert [a.status for a in slow] == ["cancelled"]
        assert await attempts_of(database, tenant, started.id, "slow_out") == []
        assert step_status(done, "slow") == STEP_CANCELLED
        assert step_status(done, "slow_out") in (STEP_CANCELLED, execution_pb2.STEP_STATUS_SKIPPED)
        assert step_status(done, "quick") == STEP_COMPLETED
    finally:
        effects.release(held)


async def test_an_any_join_cancels_a_branch_held_mid_call(
    channel: aio.Channel,
    new_tenant: NewTenant,
    effects: Effects,
    database: TenantDatabase,
) -> None:
    tenant = await new_tenant("professional")
    quick_gate, slow_gate = gate(), gate()
    branches = [
        *held_branch("quick", effects.url(hold=quick_gate)),
        *held_branch("slow", effects.url(hold=slow_gate)),
    ]
    workflow_id = await active_workflow(
        channel, tenant, fanning(branches, ["quick", "slow"], join="any")
    )
    started = await start(channel, tenant, workflow_id)
    try:
        await eventually(
            lambda: effects.holding[quick_gate] == 1 and effects.holding[slow_gate] == 1,
            "both branches' calls held",
        )
        effects.release(quick_gate)
        done = await wait_until(channel, tenant, started.id, patience=30)
        assert done.status == COMPLETED, to_dict(done)
        assert to_dict(done.result)["fan"]["branches"] == {"quick": {"branch": "quick"}}
        slow = await attempts_of(database, tenant, started.id, "slow")
        assert [a.status for a in slow] == ["cancelled"]
        assert step_status(done, "slow") == STEP_CANCELLED
    finally:
        effects.release(slow_gate)
    # The cancelled call answers after all: nothing it brings back changes the execution.
    key = f"{started.id}:slow:1"
    await eventually(lambda: effects.deliveries[key] >= 1, "the cancelled call answered")
    again = await get(channel, tenant, started.id)
    assert again.status == COMPLETED
    assert to_dict(again.result) == to_dict(done.result)
    assert [a.status for a in await attempts_of(database, tenant, started.id, "slow")] == [
        "cancelled"
    ]


async def test_an_n_of_m_join_fires_when_n_branches_succeeded(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    held = gate()
    branches = [
        transform("a", None, {"from": "a"}),
        transform("b", None, {"from": "b"}),
        *held_branch("c", effects.url(hold=held)),
    ]
    document = fanning(branches, ["a", "b", "c"], join="n_of_m", n=2)
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    try:
        done = await wait_until(channel, tenant, started.id, patience=30)
        assert done.status == COMPLETED, to_dict(done)
        fan = to_dict(done.result)["fan"]
        assert fan == {
            "join": "n_of_m",
            "branches": {"a": {"from": "a"}, "b": {"from": "b"}},
            "succeeded": 2,
            "failed": 0,
        }
        assert [a.status for a in await attempts_of(database, tenant, started.id, "c")] == [
            "cancelled"
        ]
        assert step_status(done, "c") == STEP_CANCELLED
        fan_attempts = await attempts_of(database, tenant, started.id, "fan")
        assert [a.status for a in fan_attempts] == ["completed"]
    finally:
        effects.release(held)


async def good_and_bad(
    channel: aio.Channel, tenant: str, effects: Effects, join: str
) -> tuple[str, execution_pb2.Execution]:
    """A started fan-out of a branch held at a gate (`good`) and one answered 404 (`bad`);
    the gate, to release."""
    held = gate()
    branches = [
        *held_branch("good", effects.url(hold=held)),
        *held_branch("bad", effects.url(status=404)),
    ]
    workflow_id = await active_workflow(
        channel, tenant, fanning(branches, ["good", "bad"], join=join)
    )
    return held, await start(channel, tenant, workflow_id)


async def test_a_failing_branch_fails_an_all_join_at_once(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    held, started = await good_and_bad(channel, tenant, effects, "all")
    try:
        # The execution fails while the other branch is still waiting at its gate.
        done = await wait_until(channel, tenant, started.id, patience=30)
        assert done.status == FAILED, to_dict(done)
        assert (done.error.code, done.error.step_id) == ("http_client_error", "bad")
        assert effects.deliveries[f"{started.id}:good:1"] == 0
        assert await attempts_of(database, tenant, started.id, "after") == []
        assert not done.HasField("result")
        assert [a.status for a in await attempts_of(database, tenant, started.id, "bad")] == [
            "failed"
        ]
    finally:
        effects.release(held)


async def test_a_failing_branch_in_an_any_join_is_outlived_by_one_that_succeeds(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    held, started = await good_and_bad(channel, tenant, effects, "any")
    try:

        async def bad_failed() -> bool:
            attempts = await attempts_of(database, tenant, started.id, "bad")
            return [a.status for a in attempts] == ["failed"]

        await eventually(bad_failed, "the bad branch failed")
        assert (await get(channel, tenant, started.id)).status != FAILED
    finally:
        effects.release(held)
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    fan = to_dict(done.result)["fan"]
    assert (fan["succeeded"], fan["failed"]) == (1, 1)
    assert fan["branches"]["good"] == {"branch": "good"}
    assert set(fan["branches"]) <= {"good", "bad"}
    assert step_status(done, "good_out") == STEP_COMPLETED
