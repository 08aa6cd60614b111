"""`loop` steps: for-each and while, their iterations' own item, index and outputs, results
in order, concurrency, the plan's cap."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from grpc import aio
from sqlalchemy import select

from foundation.settings import Settings
from persistence.models import Execution, StepAttempt
from service.tenants import service as tenants
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine.test_retries import FAST_RETRY
from tests.engine_stack import ENGINE_SETTINGS
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
from tiers import plan_cache
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED
IN_PROGRESS = execution_pb2.EXECUTION_STATUS_IN_PROGRESS


def for_each(concurrency: int = 1, **extra: object) -> dict[str, object]:
    """input -> each (over $.input.items) [double -> label -> each] -> total -> done."""
    return workflow(
        step("input", "input", "each"),
        step(
            "each",
            "loop",
            "total",
            config={"over": "$.input.items", "body": "double", "concurrency": concurrency, **extra},
        ),
        transform("double", "label", {"n": "$.each.item.n", "at": "$.each.index"}),
        transform("label", "each", {"n": "$.double.n", "at": "$.double.at", "tag": "$.input.tag"}),
        step(
            "total",
            "aggregate",
            "done",
            config={"sources": ["$.each"], "strategy": "sum", "path": "$.n"},
        ),
        step(
            "done",
            "output",
            config={"values": {"results": "$.each.results", "total": "$.total"}},
        ),
    )


async def test_a_for_each_loop_runs_its_body_once_per_item_and_keeps_results_in_order(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, for_each())
    items = [{"n": n} for n in (5, 1, 7)]
    started = await start(channel, tenant, workflow_id, {"items": items, "tag": "x"})
    done = await wait_until(channel, tenant, started.id, patience=60)
    assert done.status == COMPLETED, to_dict(done)
    result = to_dict(done.result)
    assert result["results"] == [
        {"n": 5, "at": 0, "tag": "x"},
        {"n": 1, "at": 1, "tag": "x"},
        {"n": 7, "at": 2, "tag": "x"},
    ]
    assert result["total"] == 13


# --- what the live tests below share --------------------------------------------------------


def io_capacity(test_database: ThrowawayDatabase) -> int:
    """Steps of I/O-bound tools the engine behind `channel` keeps waiting at once: on SQLite
    the embedded worker's threads (a step awaiting I/O holds one), on PostgreSQL the worker
    process's I/O lane."""
    if test_database.backend == "sqlite":
        return int(ENGINE_SETTINGS["worker_concurrency"])
    return Settings.model_fields["worker_io_steps"].default


def gate() -> str:
    return f"gate-{uuid.uuid4().hex[:8]}"


async def instances(
    database: TenantDatabase, tenant: str, execution_id: str, step_id: str
) -> list[StepAttempt]:
    """The attempts of every instance of `step_id` in a loop's iterations (`step_id@...`)."""
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.scalars(
            select(StepAttempt)
            .where(
                StepAttempt.execution_id == execution_id,
                StepAttempt.step_id.like(f"{step_id}@%"),
            )
            .order_by(StepAttempt.step_id, StepAttempt.attempt)
        )
        return list(rows.all())


async def outputs_of(database: TenantDatabase, tenant: str, execution_id: str) -> dict[str, Any]:
    async with database.transaction(TenantId(tenant)) as session:
        execution = await session.get(Execution, execution_id)
        assert execution is not None
        return dict(execution.outputs)


def calling_each(url: str, concurrency: int, **policies: Any) -> dict[str, Any]:
    """input -> each (over $.input.items) [call (POST {n: item}) -> shape -> each] -> done."""
    return workflow(
        step("input", "input", "each"),
        step(
            "each",
            "loop",
            "done",
            config={"over": "$.input.items", "body": "call", "concurrency": concurrency},
        ),
        http(
            "call",
            "shape",
            url,
            method="POST",
            arguments={"body": {"n": "$.each.item"}},
            **policies,
        ),
        transform("shape", "each", {"n": "$.call.body.echo.n", "at": "$.each.index"}),
        step(
            "done",
            "output",
            config={"values": {"results": "$.each.results", "count": "$.each.count"}},
        ),
    )


# --- concurrency ----------------------------------------------------------------------------


async def test_a_loop_runs_at_most_its_concurrency_of_iterations_at_once_and_keeps_their_order(
    channel: aio.Channel,
    new_tenant: NewTenant,
    effects: Effects,
    database: TenantDatabase,
    test_database: ThrowawayDatabase,
) -> None:
    tenant = await new_tenant("professional")
    held = gate()
    workflow_id = await active_workflow(channel, tenant, calling_each(effects.url(hold=held), 10))
    started = await start(channel, tenant, workflow_id, {"items": list(range(100))})
    try:
        at_once = min(10, io_capacity(test_database))
        await eventually(lambda: effects.holding[held] >= at_once, f"{at_once} calls held")
        # Ten iterations began, and no more: the next begins only when one ends, and every
        # one is waiting at the gate (or, beyond the engine's capacity, for a worker).
        calls = await instances(database, tenant, started.id, "call")
        assert sorted(a.step_id for a in calls) == sorted(f"call@each:{i}" for i in range(10))
        assert (await outputs_of(database, tenant, started.id))["each"]["started"] == 10
        assert effects.holding[held] == at_once
        running = await get(channel, tenant, started.id)
        assert running.status == IN_PROGRESS
    finally:
        effects.release(held)
    done = await wait_until(channel, tenant, started.id, patience=60)
    assert done.status == COMPLETED, to_dict(done)
    result = to_dict(done.result)
    assert result["results"] == [{"n": i, "at": i} for i in range(100)]
    assert result["count"] == 100
    calls = await instances(database, tenant, started.id, "call")
    assert len(calls) == 100 and {a.status for a in calls} == {"completed"}
    assert len([k for k in effects.keys_of(started.id) if ":call@each:" in k]) == 100


# --- while loops ----------------------------------------------------------------------------


def counting(condition: str, **extra: object) -> dict[str, Any]:
    """input -> count (while `condition`) [bump -> count] -> done."""
    return workflow(
        step("input", "input", "count"),
        step("count", "loop", "done", config={"while": condition, "body": "bump", **extra}),
        transform("bump", "count", {"i": "$.count.index", "seen": "$.count.results"}),
        step(
            "done",
            "output",
            config={"values": {"results": "$.count.results", "count": "$.count.count"}},
        ),
    )


async def test_a_while_loop_runs_until_its_condition_stops_holding(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, counting("$.count.index < 4"))
    started = await start(channel, tenant, workflow_id)
    done = await wait_until(channel, tenant, started.id, patience=15)
    assert done.status == COMPLETED, to_dict(done)
    result = to_dict(done.result)
    # Each iteration sees its own index and the results of the iterations before it.
    assert [r["i"] for r in result["results"]] == [0, 1, 2, 3]
    assert result["results"][2]["seen"] == [
        {"i": 0, "seen": []},
        {"i": 1, "seen": [{"i": 0, "seen": []}]},
    ]
    assert result["count"] == 4
    bumps = await instances(database, tenant, started.id, "bump")
    assert [a.step_id for a in bumps] == [f"bump@count:{i}" for i in range(4)]


async def test_a_while_loop_condition_reads_the_last_result(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    document = counting("$.count.last == null || $.count.last.i < 2")
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    done = await wait_until(channel, tenant, started.id, patience=15)
    assert done.status == COMPLETED, to_dict(done)
    assert [r["i"] for r in to_dict(done.result)["results"]] == [0, 1, 2]


async def test_a_while_loop_whose_condition_fails_at_once_runs_no_iteration(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, counting("$.count.index < 0"))
    started = await start(channel, tenant, workflow_id)
    done = await wait_until(channel, tenant, started.id, patience=15)
    assert done.status == COMPLETED, to_dict(done)
    assert to_dict(done.result) == {"results": [], "count": 0}
    assert await instances(database, tenant, started.id, "bump") == []


async def test_a_while_loop_stops_at_max_iterations(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    document = counting("$.count.index >= 0", max_iterations=3)
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    done = await wait_until(channel, tenant, started.id, patience=15)
    assert done.status in (COMPLETED, FAILED), to_dict(done)
    bumps = await instances(database, tenant, started.id, "bump")
    assert [a.step_id for a in bumps] == [f"bump@count:{i}" for i in range(3)]


# --- limits and odd inputs ------------------------------------------------------------------


async def test_more_items_than_the_plans_cap_fail_the_loop_with_loop_limit_exceeded(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("enterprise", {"max_loop_iterations": 3})
    workflow_id = await active_workflow(channel, tenant, for_each())
    over = await start(channel, tenant, workflow_id, {"items": [{"n": n} for n in range(4)]})
    done = await wait_until(channel, tenant, over.id, patience=30)
    assert done.status == FAILED, to_dict(done)
    assert done.error.code == "loop_limit_exceeded"
    assert done.error.step_id == "each"
    assert "3" in done.error.message
    assert await instances(database, tenant, over.id, "double") == []
    # As many items as the cap is fine.
    within = await start(channel, tenant, workflow_id, {"items": [{"n": n} for n in range(3)]})
    done = await wait_until(channel, tenant, within.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    assert to_dict(done.result)["total"] == 3


async def test_more_items_than_max_iterations_fail_the_loop(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, for_each(max_iterations=2))
    started = await start(channel, tenant, workflow_id, {"items": [{"n": n} for n in range(3)]})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == FAILED, to_dict(done)
    assert (done.error.code, done.error.step_id) == ("loop_limit_exceeded", "each")


async def test_a_loop_over_an_empty_array_completes_at_once(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, for_each())
    started = await start(channel, tenant, workflow_id, {"items": [], "tag": "x"})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    assert to_dict(done.result) == {"results": [], "total": 0}
    assert await instances(database, tenant, started.id, "double") == []
    (each,) = await attempts_of(database, tenant, started.id, "each")
    assert each.status == "completed"
    assert each.output == {"results": [], "count": 0}


async def test_a_loop_over_something_other_than_an_array_fails_with_invalid_loop_items(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, for_each())
    started = await start(channel, tenant, workflow_id, {"items": {"n": 1}})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == FAILED, to_dict(done)
    assert (done.error.code, done.error.step_id) == ("invalid_loop_items", "each")


# --- nesting --------------------------------------------------------------------------------


def rows_and_cells() -> dict[str, Any]:
    """input -> outer (over rows) [inner (over the row's cells) [cell -> inner] -> row -> outer]
    -> done."""
    return workflow(
        step("input", "input", "outer"),
        step(
            "outer",
            "loop",
            "done",
            config={"over": "$.input.rows", "body": "inner", "concurrency": 2},
        ),
        step("inner", "loop", "row", config={"over": "$.outer.item.cells", "body": "cell"}),
        transform(
            "cell",
            "inner",
            {"v": "$.inner.item", "row": "$.outer.index", "col": "$.inner.index"},
        ),
        transform("row", "outer", {"row": "$.outer.index", "cells": "$.inner.results"}),
        step("done", "output", config={"values": {"rows": "$.outer.results"}}),
    )


async def test_a_nested_loop_runs_the_inner_body_per_cell_of_each_row(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, rows_and_cells())
    rows = [{"cells": ["a", "b"]}, {"cells": ["c"]}, {"cells": []}, {"cells": ["d", "e", "f"]}]
    started = await start(channel, tenant, workflow_id, {"rows": rows})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    assert to_dict(done.result)["rows"] == [
        {
            "row": r,
            "cells": [{"v": v, "row": r, "col": c} for c, v in enumerate(row["cells"])],
        }
        for r, row in enumerate(rows)
    ]
    cells = await instances(database, tenant, started.id, "cell")
    assert sorted(a.step_id for a in cells) == sorted(
        f"cell@outer:{r}/inner:{c}" for r, row in enumerate(rows) for c in range(len(row["cells"]))
    )
    inners = await instances(database, tenant, started.id, "inner")
    assert sorted(a.step_id for a in inners) == [f"inner@outer:{r}" for r in range(4)]


# --- retries inside an iteration ------------------------------------------------------------


async def test_a_body_step_that_fails_once_is_retried_within_its_iteration(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    document = calling_each(effects.url(fail_first=1), 2, retry=FAST_RETRY)
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id, {"items": [10, 20, 30]})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    assert to_dict(done.result)["results"] == [
        {"n": 10, "at": 0},
        {"n": 20, "at": 1},
        {"n": 30, "at": 2},
    ]
    for index in range(3):
        attempts = await attempts_of(database, tenant, started.id, f"call@each:{index}")
        assert [a.status for a in attempts] == ["failed", "completed"], index
        assert effects.applied_count(started.id, f"call@each:{index}") == 1
    call = next(s for s in done.steps if s.step_id == "call")
    assert call.status == execution_pb2.STEP_STATUS_COMPLETED


# --- the plan at run time -------------------------------------------------------------------


async def test_a_loop_reached_after_a_downgrade_to_free_fails_with_tier_restriction(
    channel: aio.Channel,
    new_tenant: NewTenant,
    effects: Effects,
    admin_database: TenantDatabase,
    database: TenantDatabase,
) -> None:
    tenant = await new_tenant("professional")
    held = gate()
    document = workflow(
        step("input", "input", "call"),
        http("call", "each", effects.url(hold=held), method="POST"),
        step("each", "loop", "done", config={"over": "$.input.items", "body": "double"}),
        transform("double", "each", {"n": "$.each.item"}),
        step("done", "output", config={"values": {"results": "$.each.results"}}),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id, {"items": [1, 2]})
    try:
        await eventually(lambda: effects.holding[held] >= 1, "the call held")
        async with admin_database.transaction(None) as session:
            await tenants.set_tier(session, tenant, "free")
        # Processes trust a plan they read for FRESH_SECONDS: the worker holding the call
        # may have read it just before the change.
        await asyncio.sleep(plan_cache.FRESH_SECONDS + 0.2)
    finally:
        effects.release(held)
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == FAILED, to_dict(done)
    assert (done.error.code, done.error.step_id) == ("tier_restriction", "each")
    assert "professional" in done.error.message
    assert await instances(database, tenant, started.id, "double") == []


async def test_a_long_loop_of_inline_steps_runs_its_iterations_in_chains_and_completes(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """Chains of inline iterations change many places of the outputs in one transaction;
    past a few dozen the document is written whole, on both backends."""
    tenant = await new_tenant("enterprise")
    definition = workflow(
        step("input", "input", "each"),
        step("each", "loop", "done", config={"over": "$.input.items", "body": "add"}),
        transform("add", "each", {"n": "$.each.item", "at": "$.each.index"}),
        step("done", "output", config={"values": {"count": "$.each.count"}}),
    )
    workflow_id = await active_workflow(channel, tenant, definition)
    started = await start(channel, tenant, workflow_id, {"items": list(range(300))})
    done = await wait_until(channel, tenant, started.id, patience=60)
    assert done.status == COMPLETED, done.error_detail
    assert to_dict(done.result) == {"count": 300}
    results = to_dict(next(s for s in done.steps if s.step_id == "each").output)["results"]
    assert results == [{"n": n, "at": n} for n in range(300)]
