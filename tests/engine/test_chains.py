"""Chains of inline steps: run by the task that made them due, in its transaction, up to a
budget; no broker round trip between them."""

from __future__ import annotations

from itertools import groupby

from grpc import aio
from sqlalchemy import select

from engine.engine import CHAIN_STEPS
from persistence.models import Event, StepAttempt
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant
from tests.effects_stub import Effects
from tests.engine.test_retries import calling
from tests.execution_helpers import (
    active_workflow,
    start,
    step,
    transform,
    wait_until,
    workflow,
)
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED


def long_chain(transforms: int) -> dict[str, object]:
    """input -> t0 -> ... -> done, every step inline; t<i> adds one to what came before."""
    names = [f"t{i}" for i in range(transforms)]
    steps = [step("input", "input", names[0])]
    for i, name in enumerate(names):
        following = names[i + 1] if i + 1 < transforms else "done"
        previous = f"$.{names[i - 1]}.n" if i else "$.input.n"
        steps.append(transform(name, following, {"n": previous}))
    steps.append(step("done", "output", config={"values": {"n": f"$.{names[-1]}.n"}}))
    return workflow(*steps)


async def tasks_in_order(
    database: TenantDatabase, tenant: str, execution_id: str
) -> list[tuple[str | None, list[str]]]:
    """The execution's attempts in the order they ran, grouped by the task that ran them."""
    async with database.transaction(TenantId(tenant)) as session:
        rows = (
            await session.execute(
                select(StepAttempt.task_id, StepAttempt.step_id)
                .where(StepAttempt.execution_id == execution_id)
                .order_by(StepAttempt.started_at, StepAttempt.finished_at)
            )
        ).all()
    return [(task, [r.step_id for r in group]) for task, group in groupby(rows, lambda r: r[0])]


async def test_a_chain_of_inline_steps_runs_in_one_task_until_its_budget_then_goes_on_in_the_next(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("enterprise")
    transforms = CHAIN_STEPS + 6
    workflow_id = await active_workflow(channel, tenant, long_chain(transforms))
    started = await start(channel, tenant, workflow_id, {"n": 7})
    done = await wait_until(channel, tenant, started.id, patience=60)
    assert done.status == COMPLETED
    assert dict(done.result) == {"n": 7}
    runs = await tasks_in_order(database, tenant, started.id)
    # A task runs the step it was sent for and at most CHAIN_STEPS more (fewer if the time
    # budget runs out first, on a loaded machine); then it dispatches the next.
    lengths = [len(steps) for _, steps in runs]
    assert 2 <= len(lengths) <= (transforms + 2) // 8, lengths
    assert max(lengths) <= CHAIN_STEPS + 1
    assert all(task is not None for task, _ in runs)
    assert [s for _, steps in runs for s in steps] == [
        "input",
        *(f"t{i}" for i in range(transforms)),
        "done",
    ]
    async with database.transaction(TenantId(tenant)) as session:
        kinds = (
            await session.scalars(
                select(Event.type).where(Event.execution_id == started.id).order_by(Event.id)
            )
        ).all()
    # Each step still announces its start and its completion, in order.
    assert kinds.count("workflow_step_completed") == transforms + 2
    assert kinds[-1] == "workflow_execution_completed"


async def test_the_inline_step_after_a_dispatched_one_runs_in_the_task_that_recorded_it(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, calling(effects.url()))
    started = await start(channel, tenant, workflow_id)
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED
    runs = await tasks_in_order(database, tenant, started.id)
    assert [steps for _, steps in runs] == [["input"], ["call", "done"]]
