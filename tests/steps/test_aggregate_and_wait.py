"""`aggregate` steps (the strategies on their own, then in an execution over a loop and a
parallel) and `wait` steps: a durable timer, `seconds` or `until` a timestamp, that no
worker holds and that outlives the worker that scheduled it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from grpc import aio
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from engine.aggregation import STRATEGIES, aggregate
from engine.tools import StepFailure
from persistence.models import Dispatch
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, require
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import Processes, broker_unavailable_reason, broker_url
from tests.execution_helpers import (
    active_workflow,
    attempts_of,
    eventually,
    get,
    http,
    start,
    step,
    three_steps,
    to_dict,
    transform,
    wait_until,
    workflow,
)
from tests.fault_harness import create_tenant, engine_stack
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED
IN_PROGRESS = execution_pb2.EXECUTION_STATUS_IN_PROGRESS

INTS = st.lists(st.integers(min_value=-(10**12), max_value=10**12), max_size=30)
FLOATS = st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), max_size=30)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.floats(allow_nan=False)
)


def combine(strategy: str, *sources: Any, path: str | None = None) -> Any:
    """`aggregate` over the given values, each under a source path of its own."""
    context = {f"s{i}": value for i, value in enumerate(sources)}
    config: dict[str, Any] = {"sources": [f"$.s{i}" for i in range(len(sources))]}
    config["strategy"] = strategy
    if path is not None:
        config["path"] = path
    return aggregate(config, context)


def loop_output(results: list[Any]) -> dict[str, Any]:
    return {"results": results, "count": len(results)}


def parallel_output(branches: Mapping[str, Any], join: str = "all") -> dict[str, Any]:
    failed = sum(1 for out in branches.values() if isinstance(out, dict) and set(out) == {"error"})
    return {
        "join": join,
        "branches": dict(branches),
        "succeeded": len(branches) - failed,
        "failed": failed,
    }


# --- the strategies, by example -------------------------------------------------------------


def test_every_strategy_over_a_loops_results() -> None:
    each = loop_output([{"n": 3}, {"n": None}, {"n": 5}, {"n": 1}])
    assert combine("collect", each, path="$.n") == [3, None, 5, 1]
    assert combine("list", each, path="$.n") == [3, None, 5, 1]
    assert combine("sum", each, path="$.n") == 9
    assert combine("count", each) == 4
    assert combine("min", each, path="$.n") == 1
    assert combine("max", each, path="$.n") == 5
    assert combine("first_non_null", each, path="$.n") == 3
    assert combine("concat", loop_output([[1, 2], 3, [4]])) == [1, 2, 3, 4]
    assert combine("merge", loop_output([{"a": 1}, {"b": 2}, None, {"a": 3}])) == {"a": 3, "b": 2}
    assert set(STRATEGIES) == {
        "collect",
        "list",
        "concat",
        "merge",
        "sum",
        "count",
        "min",
        "max",
        "first_non_null",
    }


def test_a_parallel_contributes_its_succeeded_branches_only() -> None:
    fan = parallel_output(
        {"a": {"amount": 2}, "b": {"error": {"code": "boom"}}, "c": {"amount": 5}}, join="any"
    )
    assert combine("collect", fan) == [{"amount": 2}, {"amount": 5}]
    assert combine("sum", fan, path="$.amount") == 7
    assert combine("count", fan) == 2


def test_sources_are_taken_in_order_and_other_values_count_as_themselves() -> None:
    assert combine("collect", [1, 2], loop_output([3]), 4, {"x": 5}) == [1, 2, 3, 4, {"x": 5}]
    assert combine("sum", [1, 2], loop_output([3]), 4) == 10
    assert combine("first_non_null", None, [None, 0], 7) == 0


def test_nothing_to_combine() -> None:
    empty = loop_output([])
    assert combine("collect", empty) == []
    assert combine("count", empty) == 0
    assert combine("sum", empty) == 0
    assert combine("min", empty) is None
    assert combine("max", empty) is None
    assert combine("first_non_null", empty) is None
    assert combine("merge", empty) == {}
    assert combine("concat", empty) == []


def test_a_path_on_an_item_that_is_not_an_object_reads_null() -> None:
    assert combine("collect", [{"n": 1}, 2, "x"], path="$.n") == [1, None, None]


@pytest.mark.parametrize(
    ("strategy", "items"),
    [
        ("sum", [1, "2"]),
        ("sum", [1, True]),
        ("max", [1, {"n": 2}]),
        ("min", [[1], 2]),
        ("merge", [{"a": 1}, 2]),
    ],
)
def test_items_a_strategy_cannot_combine_fail_the_step(strategy: str, items: list[Any]) -> None:
    with pytest.raises(StepFailure) as refused:
        combine(strategy, items)
    assert refused.value.code == "aggregate_error"
    assert refused.value.retryable is False


# --- the strategies, as properties ----------------------------------------------------------


@given(INTS, INTS)
def test_sum_of_integers_is_pythons_sum_and_stays_an_integer(
    one: list[int], two: list[int]
) -> None:
    total = combine("sum", loop_output(one), two)
    assert total == sum(one) + sum(two)
    assert isinstance(total, int)


@given(FLOATS)
def test_sum_of_floats_is_the_exact_float_sum(values: list[float]) -> None:
    total = combine("sum", values)
    assert total == math.fsum(values)
    assert isinstance(total, float) or not values


@given(st.lists(JSON_SCALARS, max_size=30), st.lists(JSON_SCALARS, max_size=30))
def test_count_and_collect_keep_every_item(one: list[Any], two: list[Any]) -> None:
    assert combine("count", loop_output(one), two) == len(one) + len(two)
    assert combine("collect", loop_output(one), two) == one + two


@given(st.lists(st.one_of(st.none(), st.integers()), max_size=30))
def test_first_non_null_is_the_first_item_that_is_not_null(values: list[int | None]) -> None:
    expected = next((v for v in values if v is not None), None)
    assert combine("first_non_null", loop_output(values)) == expected


@given(st.lists(st.one_of(st.none(), st.integers()), max_size=30))
def test_min_and_max_skip_nulls(values: list[int | None]) -> None:
    numbers = [v for v in values if v is not None]
    assert combine("min", values) == (min(numbers) if numbers else None)
    assert combine("max", values) == (max(numbers) if numbers else None)


@given(st.lists(st.dictionaries(st.sampled_from("abcde"), st.integers(), max_size=4), max_size=10))
def test_merge_lets_later_objects_win(objects: list[dict[str, int]]) -> None:
    expected: dict[str, int] = {}
    for item in objects:
        expected.update(item)
    assert combine("merge", loop_output(objects)) == expected


@given(st.lists(st.integers(), max_size=20), st.dictionaries(st.sampled_from("abc"), INTS))
def test_a_field_read_from_each_branch_sums_like_the_fields(
    extra: list[int], branches: dict[str, list[int]]
) -> None:
    fan = parallel_output({name: {"amount": sum(v)} for name, v in branches.items()})
    expected = sum(sum(v) for v in branches.values())
    assert combine("sum", fan, path="$.amount") == expected
    assert combine("count", fan, extra) == len(branches) + len(extra)


# --- an aggregate in an execution -----------------------------------------------------------


def totals() -> dict[str, Any]:
    """input -> each (over items: amount of each) -> fan (three amounts) -> aggregates -> done."""
    return workflow(
        step("input", "input", "each"),
        step("each", "loop", "fan", config={"over": "$.input.items", "body": "price"}),
        transform("price", "each", {"amount": "$.each.item.amount", "sku": "$.each.item.sku"}),
        step("fan", "parallel", "sum", config={"branches": ["tax", "fee", "tip"], "join": "all"}),
        transform("tax", None, {"amount": "$.input.tax"}),
        transform("fee", None, {"amount": 2}),
        transform("tip", None, {"amount": None}),
        step(
            "sum",
            "aggregate",
            "count",
            config={"sources": ["$.each", "$.fan"], "strategy": "sum", "path": "$.amount"},
        ),
        step("count", "aggregate", "top", config={"sources": ["$.each"], "strategy": "count"}),
        step(
            "top",
            "aggregate",
            "skus",
            config={"sources": ["$.each"], "strategy": "max", "path": "$.amount"},
        ),
        step(
            "skus",
            "aggregate",
            "done",
            config={"sources": ["$.each"], "strategy": "collect", "path": "$.sku"},
        ),
        step(
            "done",
            "output",
            config={
                "values": {"sum": "$.sum", "count": "$.count", "top": "$.top", "skus": "$.skus"}
            },
        ),
    )


async def test_aggregates_over_a_loop_and_a_parallel_in_an_execution(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, totals())
    items = [{"amount": 10, "sku": "a"}, {"amount": 25, "sku": "b"}, {"amount": 5, "sku": "c"}]
    started = await start(channel, tenant, workflow_id, {"items": items, "tax": 4})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    assert to_dict(done.result) == {"sum": 46, "count": 3, "top": 25, "skus": ["a", "b", "c"]}
    (summed,) = await attempts_of(database, tenant, started.id, "sum")
    assert summed.output == 46  # the step's output is the value itself


async def test_an_aggregate_that_cannot_combine_fails_with_aggregate_error(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    document = workflow(
        step("input", "input", "sum"),
        step("sum", "aggregate", "done", config={"sources": ["$.input.values"], "strategy": "sum"}),
        step("done", "output", config={"values": {"sum": "$.sum"}}),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id, {"values": [1, "two"]})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == FAILED, to_dict(done)
    assert (done.error.code, done.error.step_id) == ("aggregate_error", "sum")


# --- wait -----------------------------------------------------------------------------------


def pausing(config: dict[str, Any]) -> dict[str, Any]:
    """input -> pause (wait) -> done."""
    return workflow(
        step("input", "input", "pause"),
        step("pause", "wait", "done", config=config),
        step("done", "output", config={"values": {"pause": "$.pause"}}),
    )


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def pending_timer(database: TenantDatabase, tenant: str, execution_id: str) -> Any:
    """The `pause` attempt once it is scheduled (None before)."""
    attempts = await attempts_of(database, tenant, execution_id, "pause")
    return attempts[0] if attempts else None


async def test_a_wait_holds_the_execution_in_progress_then_goes_on(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, pausing({"seconds": 1}))
    started = await start(channel, tenant, workflow_id)

    async def scheduled() -> bool:
        timer = await pending_timer(database, tenant, started.id)
        return timer is not None

    await eventually(scheduled, "the wait scheduled")
    timer = await pending_timer(database, tenant, started.id)
    meanwhile = await get(channel, tenant, started.id)
    if timer.status == "scheduled":  # not yet fired: the execution waits at the step
        assert meanwhile.status == IN_PROGRESS, to_dict(meanwhile)
        pause = next(s for s in meanwhile.steps if s.step_id == "pause")
        assert pause.status != execution_pb2.STEP_STATUS_COMPLETED
        assert not meanwhile.HasField("result")
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    waited = to_dict(done.result)["pause"]
    assert waited["until"] is None
    (fired,) = await attempts_of(database, tenant, started.id, "pause")
    assert fired.status == "completed"
    assert fired.due_at is not None and fired.started_at is not None
    assert fired.started_at >= fired.due_at
    (entered,) = await attempts_of(database, tenant, started.id, "input")
    assert entered.finished_at is not None
    assert (fired.started_at - entered.finished_at) >= timedelta(seconds=0.95)
    began = done.start_time.ToDatetime(tzinfo=UTC)
    assert moment(waited["resumed_at"]) - began >= timedelta(seconds=0.95)


async def test_waiting_executions_hold_no_worker(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    """More executions wait at once than the engine has workers (two on SQLite); another
    execution still runs to its end meanwhile, and the waits' dispatch rows hold the timers."""
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, pausing({"seconds": 4}))
    waiting = [await start(channel, tenant, workflow_id) for _ in range(3)]

    async def all_scheduled() -> bool:
        timers = [await pending_timer(database, tenant, e.id) for e in waiting]
        return all(t is not None for t in timers)

    await eventually(all_scheduled, "the waits scheduled")
    async with database.transaction(TenantId(tenant)) as session:
        rows = (
            await session.scalars(
                select(Dispatch).where(
                    Dispatch.tenant_id == tenant,
                    Dispatch.execution_id.in_([e.id for e in waiting]),
                    Dispatch.step_id == "pause",
                )
            )
        ).all()
    now = datetime.now(UTC).replace(tzinfo=None)
    assert len(rows) == 3
    assert all(row.fire_at.replace(tzinfo=None) > now for row in rows), [r.fire_at for r in rows]
    quick_id = await active_workflow(channel, tenant, three_steps())
    quick = await start(channel, tenant, quick_id, {"name": "meanwhile"})
    finished = await wait_until(channel, tenant, quick.id, patience=10)
    assert finished.status == COMPLETED
    still = [await get(channel, tenant, e.id) for e in waiting]
    assert [e.status for e in still] == [IN_PROGRESS] * 3
    for execution in waiting:
        done = await wait_until(channel, tenant, execution.id, patience=30)
        assert done.status == COMPLETED, to_dict(done)


async def test_a_wait_until_a_past_time_goes_on_at_once(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, pausing({"until": "$.input.at"}))
    started = await start(channel, tenant, workflow_id, {"at": "2000-01-01T00:00:00+00:00"})
    done = await wait_until(channel, tenant, started.id, patience=10)
    assert done.status == COMPLETED, to_dict(done)
    waited = to_dict(done.result)["pause"]
    assert moment(waited["until"]) == datetime(2000, 1, 1, tzinfo=UTC)
    assert moment(waited["resumed_at"]) > moment(waited["until"])


async def test_a_wait_until_a_time_soon_goes_on_after_it(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, pausing({"until": "$.input.at"}))
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    started = await start(channel, tenant, workflow_id, {"at": at.isoformat()})
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == COMPLETED, to_dict(done)
    waited = to_dict(done.result)["pause"]
    assert moment(waited["until"]) == at
    assert moment(waited["resumed_at"]) >= at


@pytest.mark.parametrize("at", ["next tuesday", 12, None], ids=["text", "number", "null"])
async def test_a_wait_until_something_that_is_not_a_timestamp_fails_with_invalid_wait(
    channel: aio.Channel, new_tenant: NewTenant, at: object
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, pausing({"until": "$.input.at"}))
    started = await start(channel, tenant, workflow_id, {"at": at})
    done = await wait_until(channel, tenant, started.id, patience=10)
    assert done.status == FAILED, to_dict(done)
    assert (done.error.code, done.error.step_id) == ("invalid_wait", "pause")


# --- a wait outlives its worker -------------------------------------------------------------


@pytest.fixture
def shared_broker() -> str:
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    return url


@pytest.mark.faults
@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_a_wait_survives_a_worker_restart(
    postgres: ThrowawayDatabase, effects: Effects, shared_broker: str, tmp_path: Path
) -> None:
    tenant = await create_tenant(postgres, "professional")
    # The call runs on the worker, which then schedules the wait in the same transaction:
    # the timer outlives the very worker that set it.
    document = workflow(
        step("input", "input", "call"),
        http("call", "pause", effects.url(), method="POST"),
        step("pause", "wait", "done", config={"seconds": 4}),
        step("done", "output", config={"values": {"key": "$.call.body.key"}}),
    )
    async with engine_stack(postgres, effects, tmp_path, broker=shared_broker) as stack:
        workflow_id = await active_workflow(stack.channel, tenant, document)
        started = await start(stack.channel, tenant, workflow_id)

        async def scheduled() -> bool:
            timer = await pending_timer(stack.database, tenant, started.id)
            return timer is not None and timer.status == "scheduled"

        await eventually(scheduled, f"the wait scheduled\n{stack.logs()}", patience=30)
        (victim,) = list(stack.workers)
        Processes.kill(victim)  # SIGKILL: the worker and its pool processes
        assert victim.poll() is not None
        assert (await get(stack.channel, tenant, started.id)).status == IN_PROGRESS
        timer = await pending_timer(stack.database, tenant, started.id)
        assert timer.status == "scheduled", "the wait fired before the worker went"
        stack.worker()
        try:
            done = await wait_until(stack.channel, tenant, started.id, patience=60)
        except AssertionError as stuck:
            raise AssertionError(f"{stuck}\n{stack.logs()}") from None
        assert done.status == COMPLETED, to_dict(done)
        assert to_dict(done.result) == {"key": f"{started.id}:call:1"}
        (called,) = await attempts_of(stack.database, tenant, started.id, "call")
        (fired,) = await attempts_of(stack.database, tenant, started.id, "pause")
        assert called.task_id is not None and fired.task_id != called.task_id
        assert fired.status == "completed"
        assert fired.started_at is not None and fired.started_at >= fired.due_at
