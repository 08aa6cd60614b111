"""Steps that run other steps: `loop` and `parallel`, and where a path goes after a step.

Both are inline steps that start their children and stay running: a loop starts its first
iterations (up to its `concurrency`), a parallel every branch. Their state lives in their
own output, under the execution's row lock like every transition, so two children that end
at the same instant on two workers are recorded one after the other and a join fires once:

- a loop's output is `{"items", "results", "count", "started", "finished"}` while it runs
  (`items` and the two counters go when it ends); each iteration's result (what its last step
  output) lands at its index, so results keep the items' order whatever order they end in;
- a parallel's is `{"join", "needed", "branches", "succeeded", "failed"}`; `branches` maps
  each branch (by its first step) to what its last step output, or to its error.

A child's attempts are keyed by instance (`engine.instances`), so an iteration's steps never
meet another iteration's.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any, Final

from engine import attempts as attempt_rows
from engine import dispatch, expressions, progress, transitions
from engine.graph import Graph, resolve_values
from engine.instances import base, enter, innermost, leave, same_scope, scope_of
from engine.progress import StepStatus
from engine.rows import AttemptRow, ExecutionRow
from engine.runner import Outcome
from engine.tools import StepFailure
from engine.units import Unit, flush
from persistence.models import AttemptStatus

CONTROL_TYPES: Final = frozenset({"loop", "parallel"})
DEFAULT_CONCURRENCY: Final = 1


async def begin(
    unit: Unit,
    execution: ExecutionRow,
    attempt: AttemptRow,
    step: Mapping[str, Any],
    context: Mapping[str, Any],
) -> Outcome | None:
    """Start a loop or a parallel (claimed in this transaction): its first children are due.

    An Outcome when it is done at once (a loop over nothing); None while its children run.
    """
    if step.get("type") == "loop":
        done = _begin_loop(unit, execution, attempt, step, context)
    else:
        done = _begin_parallel(execution, attempt, step)
    if done is not None:
        return done
    await transitions.settle(unit, execution, attempt)  # no dispatch row while children run
    for child in _first_children(execution, attempt.step_id, step):
        await transitions.schedule_step(unit, execution, child)
    return None


def _begin_loop(
    unit: Unit,
    execution: ExecutionRow,
    attempt: AttemptRow,
    step: Mapping[str, Any],
    context: Mapping[str, Any],
) -> Outcome | None:
    config = step.get("config") or {}
    following = str(step["next"]) if step.get("next") else None
    limit = min(int(config.get("max_iterations") or 10**9), unit.plan.limits.max_loop_iterations)
    if "over" in config:
        items = resolve_values(config["over"], context)
        if not isinstance(items, list):
            raise StepFailure(
                "invalid_loop_items",
                f"{config['over']} is {_kind(items)}, not an array",
                retryable=False,
            )
        if len(items) > limit:
            raise StepFailure(
                "loop_limit_exceeded",
                f"{config['over']} holds {len(items)} items; the loop runs at most {limit}",
                retryable=False,
            )
        if not items:
            return Outcome({"results": [], "count": 0}, following)
        started = min(int(config.get("concurrency") or DEFAULT_CONCURRENCY), len(items))
        state: dict[str, Any] = {
            "items": items,
            "results": [None] * len(items),
            "count": len(items),
            "started": started,
            "finished": 0,
        }
    else:
        if limit < 1 or not _holds(step, context, index=0, results=[]):
            return Outcome({"results": [], "count": 0}, following)
        state = {"results": [], "count": 0, "started": 1, "finished": 0}
    execution.patch_output(attempt.step_id, state)
    return None


def _begin_parallel(
    execution: ExecutionRow, attempt: AttemptRow, step: Mapping[str, Any]
) -> Outcome | None:
    config = step.get("config") or {}
    branches = [str(branch) for branch in config["branches"]]
    join = str(config.get("join") or "all")
    needed = {"all": len(branches), "any": 1}.get(join, int(config.get("n") or len(branches)))
    state = {"join": join, "needed": needed, "branches": {}, "succeeded": 0, "failed": 0}
    execution.patch_output(attempt.step_id, state)
    return None


def _first_children(execution: ExecutionRow, instance: str, step: Mapping[str, Any]) -> list[str]:
    config = step.get("config") or {}
    if step.get("type") == "loop":
        started = int(execution.outputs[instance]["started"])
        return [enter(instance, str(step["id"]), index, config["body"]) for index in range(started)]
    return [same_scope(instance, str(branch)) for branch in config["branches"]]


async def go_on(
    unit: Unit, execution: ExecutionRow, instance: str, following: str | None, output: Any
) -> None:
    """`instance` is done (its output recorded, or its failure let pass): run what follows."""
    graph = Graph.of(execution.definition)
    step_id = base(instance)
    if following is not None and graph.ends_iteration(step_id, following):
        await _iteration_ended(unit, execution, instance, output)
    elif following is not None:
        await transitions.schedule_step(unit, execution, same_scope(instance, following))
    elif step_id in graph.branch_of:
        await _branch_ended(unit, execution, instance, output, None)
    elif scope_of(instance):  # a body path that stops short of its loop ends the iteration
        await _iteration_ended(unit, execution, instance, output)
    else:
        await transitions.complete(unit, execution)


async def failed(unit: Unit, execution: ExecutionRow, instance: str, error: dict[str, Any]) -> bool:
    """A step on a parallel's branch failed for good: the branch ends failed. False when
    the step is on no branch (the execution fails)."""
    if base(instance) not in Graph.of(execution.definition).branch_of:
        return False
    await _branch_ended(unit, execution, instance, None, error)
    return True


async def _iteration_ended(unit: Unit, execution: ExecutionRow, instance: str, output: Any) -> None:
    frame = innermost(instance)
    assert frame is not None
    loop = leave(instance, frame.loop_id)
    state = execution.outputs.get(loop)
    if not isinstance(state, Mapping) or "finished" not in state:
        return  # the loop ended already (its branch lost a race): nothing follows
    graph = Graph.of(execution.definition)
    step = graph.step(frame.loop_id)
    config = step.get("config") or {}
    finished = int(state["finished"]) + 1
    execution.patch_output_at((loop, "results", frame.index), output)
    execution.patch_output_at((loop, "finished"), finished)
    started = int(state["started"])
    if "over" in config:
        if started < int(state["count"]):
            execution.patch_output_at((loop, "started"), started + 1)
            await transitions.schedule_step(
                unit, execution, enter(loop, frame.loop_id, started, config["body"])
            )
            return
        if finished < int(state["count"]):
            return
    else:
        execution.patch_output_at((loop, "count"), finished)
        limit = min(
            int(config.get("max_iterations") or 10**9), unit.plan.limits.max_loop_iterations
        )
        results = list(execution.outputs[loop]["results"])
        context = graph.context(loop, execution.input, execution.outputs)
        if finished < limit and _holds(step, context, index=finished, results=results):
            execution.patch_output_at((loop, "started"), started + 1)
            await transitions.schedule_step(
                unit, execution, enter(loop, frame.loop_id, finished, config["body"])
            )
            return
    results = list(execution.outputs[loop]["results"])
    await _finish(unit, execution, loop, {"results": results, "count": len(results)})


async def _branch_ended(
    unit: Unit,
    execution: ExecutionRow,
    instance: str,
    output: Any,
    error: dict[str, Any] | None,
) -> None:
    graph = Graph.of(execution.definition)
    parallel_id, branch = graph.branch_of[base(instance)]
    parallel = same_scope(instance, parallel_id)
    state = execution.outputs.get(parallel)
    if not isinstance(state, Mapping) or "needed" not in state:
        return  # joined already: a loser that finished meanwhile changes nothing
    succeeded = int(state["succeeded"]) + (error is None)
    failures = int(state["failed"]) + (error is not None)
    execution.patch_output_at(
        (parallel, "branches", branch), output if error is None else {"error": error}
    )
    execution.patch_output_at((parallel, "succeeded"), succeeded)
    execution.patch_output_at((parallel, "failed"), failures)
    needed = int(state["needed"])
    branches = list(graph.step(parallel_id).get("config", {}).get("branches") or [])
    if succeeded >= needed:
        losers = [b for b in branches if b not in execution.outputs[parallel]["branches"]]
        await _cancel_branches(unit, execution, parallel, losers)
        done = execution.outputs[parallel]
        await _finish(
            unit,
            execution,
            parallel,
            {
                "join": done["join"],
                "branches": done["branches"],
                "succeeded": succeeded,
                "failed": failures,
            },
        )
    elif len(branches) - failures < needed:
        assert error is not None
        await transitions.fail(
            unit,
            execution,
            {**error, "step_id": base(instance), "step_name": graph.name(instance)},
        )


async def _finish(
    unit: Unit, execution: ExecutionRow, instance: str, output: dict[str, Any]
) -> None:
    """The loop or parallel `instance` is done with `output`: its attempt completes (through
    `transitions.succeed`, so size limits and events are a step's) and its next step runs."""
    attempt = await _running_attempt(unit, execution, instance)
    if attempt is None:
        return
    unit.undispatched.add((execution.id, instance, attempt.attempt))  # settled at its start
    following = Graph.of(execution.definition).next_of(instance)
    await transitions.succeed(unit, execution, attempt, Outcome(output, following))


async def _running_attempt(unit: Unit, execution: ExecutionRow, instance: str) -> AttemptRow | None:
    """The running attempt of a loop or parallel: this transaction's own row when it began
    here (a chain), else the stored one."""
    for row in reversed(unit.attempts):
        if row.execution_id == execution.id and row.step_id == instance:
            return row if row.status == AttemptStatus.RUNNING else None
    if "@" in instance:
        number = await attempt_rows.highest_for(unit.session, execution.id, instance)
    else:
        number = await transitions.highest_number(unit, execution, instance)
    if not number:
        return None
    found = await attempt_rows.get(unit.session, execution.id, instance, number)
    if found is None or found.status != AttemptStatus.RUNNING:
        return None
    return unit.track_attempt(found)


async def _cancel_branches(
    unit: Unit, execution: ExecutionRow, parallel: str, losers: list[str]
) -> None:
    """The join fired: the branches that have not ended stop (their attempts cancelled,
    their dispatch rows gone, their steps shown cancelled)."""
    if not losers:
        return
    graph = Graph.of(execution.definition)
    members = sorted({m for loser in losers for m in graph.branch_members(loser)})
    names = [same_scope(parallel, member) for member in members]
    # A loop on a losing branch: the instances of its iterations stop too.
    markers = [iterations_marker(name) for name in names if base(name) in graph.bodies]
    if unit.chain is not None:  # in place: the chain being run holds this very list
        unit.chain.due[:] = [
            row
            for row in unit.chain.due
            if row.step_id not in names and not _in_iterations(row.step_id, markers)
        ]
    await flush(unit)
    await attempt_rows.cancel_instances(unit.session, execution.id, names, markers, unit.now)
    await dispatch.drop_instances(unit.session, execution.id, names, markers)
    for member in members:
        entry = progress.entry(execution.steps, member)
        if entry["status"] in (StepStatus.PENDING.value, StepStatus.IN_PROGRESS.value):
            transitions.set_step(
                unit,
                execution,
                member,
                status=StepStatus.CANCELLED.value,
                completed_at=progress.iso(unit.now),
            )


def iterations_marker(loop: str) -> str:
    """What follows the `@` of every instance id within the iterations of the loop instance
    `loop` (and only of those): `loop:` for a loop outside any other, else `<scope>/loop:`."""
    at = loop.find("@")
    return f"{loop}:" if at < 0 else f"{loop[at + 1 :]}/{loop[:at]}:"


def _in_iterations(instance: str, markers: list[str]) -> bool:
    at = instance.find("@")
    return at >= 0 and instance[at + 1 :].startswith(tuple(markers))


def _holds(
    step: Mapping[str, Any], context: Mapping[str, Any], *, index: int, results: list[Any]
) -> bool:
    """Whether a while loop runs iteration `index`: its condition, seeing `$.<loop>.index`,
    `$.<loop>.results` and `$.<loop>.last` (the previous iteration's result)."""
    config = step.get("config") or {}
    loop_id = str(step["id"])
    seen = ChainMap(
        {loop_id: {"index": index, "results": results, "last": results[-1] if results else None}},
        context,  # type: ignore[arg-type]
    )
    text = str(config["while"])
    try:
        holds = expressions.evaluate(expressions.parse(text), seen)
    except (expressions.ExpressionError, expressions.EvaluationError) as error:
        raise StepFailure(
            "condition_error",
            f"the loop's while condition ({text!r}) cannot be evaluated",
            details=str(error),
            retryable=False,
        ) from None
    return holds is True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", str: "a string", bool: "a boolean"}.get(type(value), "a number")
