"""Fair workers: one tenant's slow calls never hold the worker processes another tenant needs.

A `wfe worker` with a single process runs a heavy tenant's HTTP steps, each held open by
the external system until the test lets go, and a light tenant's workflow meanwhile.
Steps of I/O-bound tools come on the process's I/O lane and go on in its event loop, so
the light tenant finishes while the heavy calls are in flight, even when they fill the
lane and more wait on the broker behind them. (With `WFE_WORKER_IO_STEPS=0` each step
holds the process for its whole call, as a CPU-bound tool's always does.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    eventually,
    get,
    http,
    start,
    step,
    three_steps,
    workflow,
)
from tests.fault_harness import create_tenant, engine_stack, wait_all_finished
from wfe.v1 import execution_pb2

pytestmark = pytest.mark.postgres

HEAVY = 4
LANE = 2  # the worker's WFE_WORKER_IO_STEPS: half the heavy calls wait on the broker
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
PENDING_OR_RUNNING = {
    execution_pb2.EXECUTION_STATUS_PENDING,
    execution_pb2.EXECUTION_STATUS_IN_PROGRESS,
}


def held_call(effects: Effects, gate: str) -> dict[str, object]:
    """input -> call (answered only once the test releases `gate`) -> done."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http("call", "done", effects.url(hold=gate), name="Call"),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )


@pytest.mark.parametrize("pool", ["prefork", "threads"])
async def test_a_light_tenant_finishes_while_a_heavy_tenants_calls_fill_the_only_process_lane(
    postgres: ThrowawayDatabase, effects: Effects, shared_broker: str, tmp_path: Path, pool: str
) -> None:
    heavy = await create_tenant(postgres, "enterprise")
    light = await create_tenant(postgres, "free")
    async with engine_stack(
        postgres,
        effects,
        tmp_path,
        broker=shared_broker,
        workers=[("--pool", pool, "--concurrency", "1")],
        extra_env={"WFE_WORKER_IO_STEPS": str(LANE)},
    ) as stack:
        gate = f"heavy-{pool}"  # the effects stub outlives the test: a gate of its own
        slow = await active_workflow(stack.channel, heavy, held_call(effects, gate))
        quick = await active_workflow(stack.channel, light, three_steps())
        heavy_ids = [(await start(stack.channel, heavy, slow, {"n": n})).id for n in range(HEAVY)]
        await eventually(
            lambda: effects.holding[gate] == LANE,
            f"{LANE} heavy calls in flight at once on one worker process",
            patience=30,
        )

        light_id = (await start(stack.channel, light, quick, {"name": "light"})).id
        [finished] = await wait_all_finished(
            stack.channel, light, [light_id], patience=30, diagnostics=stack.logs
        )

        assert finished.status == COMPLETED
        assert effects.holding[gate] == LANE, "the light tenant waited for a heavy call"
        for heavy_id in heavy_ids:
            assert (await get(stack.channel, heavy, heavy_id)).status in PENDING_OR_RUNNING
        effects.release(gate)
        done = await wait_all_finished(
            stack.channel, heavy, heavy_ids, patience=60, diagnostics=stack.logs
        )
        assert {record.status for record in done} == {COMPLETED}
        for heavy_id in heavy_ids:
            key = f"{heavy_id}:call:1"
            assert effects.keys_of(heavy_id) == [key]
            assert effects.received[key] == 1, "a held call was made twice"
