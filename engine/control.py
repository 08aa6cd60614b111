"""Starting, cancelling, retrying and rerunning executions, within the caller's transaction.

Each operation returns the execution and leaves the step tasks it made due in the
`Unit`, for the caller to publish after the transaction commits. What an execution
runs is given to it (a definition and its version): finding the workflow, and
answering a repeated request id, are the caller's.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from engine import admission, announcements, progress, schemas, transitions
from engine import executions as repository
from engine.graph import Graph
from engine.progress import StepStatus
from engine.rows import ExecutionRow
from engine.sizes import check_input_size
from engine.steptypes import MINIMUM_TIER, STEP_TYPES
from engine.tools import installed
from engine.transitions import TERMINAL
from engine.units import Unit
from foundation import tracing
from foundation.errors import (
    ExecutionNotFound,
    ExecutionStateConflict,
    FeatureNotInPlan,
    FieldViolation,
    InvalidInput,
)
from persistence.models import ExecutionStatus
from tiers import Quota, TenantPlan, consume
from tiers.ledger import CounterLedger


def has_input_schema(definition: Mapping[str, Any]) -> bool:
    """Whether starting `definition` checks its input against a schema (work worth offloading)."""
    return bool(definition.get("input_schema"))


def check_input(definition: Mapping[str, Any], value: Mapping[str, Any], field: str) -> None:
    """INVALID_INPUT with one violation per problem when `value` breaks the input schema.

    A stored schema that today's rules refuse (saved before them) is never applied: the
    start is refused as invalid input naming the schema's fault, so nothing is fetched.
    """
    _refuse(schemas.validate(definition.get("input_schema") or {}, value), field)


QUICK_INPUT_BYTES: Final = 4096
"""An input up to this size (compact JSON) may be checked on the loop (`check_input_quickly`)."""


def check_input_quickly(
    definition: Mapping[str, Any], value: Mapping[str, Any], size: int | None, field: str
) -> bool:
    """`check_input` right here when that is sure to be cheap: a small input (`size`, its
    `encoded_size`) and a small schema checked within a small budget. False when it is
    not: the caller checks it off the loop. Most inputs and schemas are small, and sending
    them to a worker process costs more than checking them."""
    if size is None or size > QUICK_INPUT_BYTES:
        return False
    problems = schemas.validate_quickly(definition.get("input_schema") or {}, value)
    if problems is None:
        return False
    _refuse(problems, field)
    return True


def _refuse(problems: Sequence[schemas.Problem], field: str) -> None:
    """INVALID_INPUT for these problems; nothing when there are none."""
    if not problems:
        return
    if problems[0].in_schema:
        violations = [
            FieldViolation(".".join(["input_schema", *map(str, problem.path)]), problem.message)
            for problem in problems
        ]
        raise InvalidInput(
            f"the workflow's input_schema is invalid: {problems[0].message}",
            metadata={"problems": len(problems), "subject": "input_schema"},
            violations=violations,
        )
    violations = [
        FieldViolation(".".join([field, *map(str, problem.path)]), problem.message)
        for problem in problems
    ]
    raise InvalidInput(
        f"the input does not match the workflow's input_schema: {problems[0].message}",
        metadata={"problems": len(problems)},
        violations=violations,
    )


def check_step_types(definition: Mapping[str, Any], plan: TenantPlan) -> None:
    """A workflow made on a higher tier runs only if today's plan admits its steps and tools."""
    for step in definition.get("steps", []):
        step_type = STEP_TYPES.get(step.get("type", ""))
        if step_type is not None and step_type.access > plan.limits.step_types:
            raise FeatureNotInPlan(
                f"step {step['id']!r} is a {step_type.category} step ({step_type.name}), "
                f"which needs the {MINIMUM_TIER[step_type.access]} tier",
                metadata={"tier": plan.tier, "step_id": step["id"], "step_type": step_type.name},
            )
        tool = installed().spec(str((step.get("config") or {}).get("tool", "")))
        if step.get("type") == "tool" and tool is not None and tool.access > plan.limits.step_types:
            raise FeatureNotInPlan(
                f"step {step['id']!r} calls the tool {tool.name!r}, "
                f"which needs the {tool.minimum_tier} tier",
                metadata={"tier": plan.tier, "step_id": step["id"], "tool": tool.name},
            )


async def get(unit: Unit, execution_id: str, *, for_update: bool = False) -> ExecutionRow:
    """The execution; `for_update`: locked, and written with the unit when it changes."""
    execution = await repository.get(unit.session, execution_id, for_update=for_update)
    if execution is None:
        raise ExecutionNotFound(
            f"no execution {execution_id!r}", metadata={"execution_id": execution_id}
        )
    return unit.track(execution) if for_update else execution


async def snapshot(unit: Unit, execution_id: str) -> tuple[ExecutionRow, int]:
    """The execution and the id of its last event: later events are changes it does not show."""
    found = await repository.get_with_last_event(unit.session, execution_id)
    if found is None:
        raise ExecutionNotFound(
            f"no execution {execution_id!r}", metadata={"execution_id": execution_id}
        )
    return found


def finished(execution: ExecutionRow) -> bool:
    """Whether the execution is in a terminal status (completed, failed or cancelled)."""
    return execution.status in TERMINAL


async def _admit_or_queue(unit: Unit, execution: ExecutionRow, *, fresh: bool) -> None:
    await admission.lock_tenant(unit.session, unit.plan.tenant_id)
    slots = await admission.try_take_slot(unit.session, unit.plan, unit.ledger)
    if slots is not None:
        await transitions.admit(unit, execution, slots, fresh=fresh)
        return
    execution.status = ExecutionStatus.QUEUED
    ahead = await admission.queued_before(unit.session, execution.created_at)
    limit = unit.plan.limits.max_concurrent_executions
    announcements.execution_update(
        unit,
        execution,
        unit.now,
        message=f"queued: {limit} executions are running, {ahead} queued before this one",
    )


async def start(
    unit: Unit,
    actor: str,
    workflow_id: str | None,
    version: int,
    definition: dict[str, Any],
    execution_input: dict[str, Any],
    request_id: str = "",
    *,
    input_checked: bool = False,
    input_size: int | None = None,
    test: bool = False,
) -> ExecutionRow:
    """Start `definition` (the workflow's `version`) on `execution_input`.

    `input_checked`: the caller has already run `check_input` on this definition and input
    (away from the event loop), so it is not run again here; `input_size`: the input's
    `encoded_size`, when the caller measured it. A `test` run (TestExecute) takes a slot
    like any execution but is not counted against the day.
    """
    check_input_size(unit.plan, execution_input, "input", input_size)
    if not input_checked:
        check_input(definition, execution_input, "input")
    check_step_types(definition, unit.plan)
    execution = _new(unit, actor, workflow_id, version, definition)
    execution.input = execution_input
    execution.request_id = request_id or None
    execution.test = test
    await _begin(unit, execution, count_day=not test)
    return execution


def _new(
    unit: Unit, actor: str, workflow_id: str | None, version: int, definition: dict[str, Any]
) -> ExecutionRow:
    row = ExecutionRow(
        {
            "id": str(uuid.uuid4()),
            "tenant_id": unit.plan.tenant_id,
            "workflow_id": workflow_id,
            "workflow_version": version,
            "definition": definition,
            "input": {},
            "status": ExecutionStatus.QUEUED,
            "steps": progress.initial(definition),
            "outputs": {},
            "progress": 0.0,
            "holds_slot": False,
            "created_at": unit.now,
            "updated_at": unit.now,
            "created_by": actor,
            "test": False,
            "trace_parent": tracing.traceparent(),
        },
        stored=False,
    )
    return unit.track(row)


async def _begin(unit: Unit, execution: ExecutionRow, *, count_day: bool = True) -> None:
    """Count a new execution against the day, then admit or queue it; it is inserted with
    the unit's other writes (`units.flush`), in its final state.

    The tenant's admission lock and counters are taken last: they serialise the
    tenant's starts until commit, so the less work after them, the more starts per
    second. A refusal rolls the whole transaction back, so the order loses nothing.
    In a group commit the counters come from the batch's ledger (`batch_ledger`).
    """
    await admission.lock_tenant(unit.session, unit.plan.tenant_id)
    unit.tally.started += 1
    if not count_day:
        pass
    elif unit.ledger is not None:
        unit.ledger.consume(Quota.EXECUTIONS_PER_DAY)
    else:
        await consume(unit.session, unit.plan, Quota.EXECUTIONS_PER_DAY, now=unit.now)
    await _admit_or_queue(unit, execution, fresh=True)


async def batch_ledger(unit: Unit) -> CounterLedger:
    """The quota counters a batch of starts takes, locked for its transaction (after the
    tenant's admission lock, the order every path takes them in)."""
    await admission.lock_tenant(unit.session, unit.plan.tenant_id)
    ledger = CounterLedger(unit.session, unit.plan, unit.now)
    await ledger.lock([Quota.EXECUTIONS_PER_DAY, Quota.CONCURRENT_EXECUTIONS])
    return ledger


async def cancel(unit: Unit, actor: str, execution_id: str, reason: str) -> ExecutionRow:
    execution = await get(unit, execution_id, for_update=True)
    if execution.status in TERMINAL:
        raise ExecutionStateConflict(
            f"execution {execution_id!r} is already {execution.status}",
            metadata={"execution_id": execution_id, "status": execution.status},
        )
    announcements.control(unit, execution, unit.now, action="cancel", actor=actor, reason=reason)
    await transitions.cancel(unit, execution, actor)
    return execution


async def retry(unit: Unit, actor: str, execution_id: str) -> ExecutionRow:
    """Resume a failed execution from its failed step; completed steps keep their outputs."""
    execution = await get(unit, execution_id, for_update=True)
    if execution.status != ExecutionStatus.FAILED:
        raise ExecutionStateConflict(
            f"only failed executions can be retried; {execution_id!r} is {execution.status}",
            metadata={"execution_id": execution_id, "status": execution.status},
        )
    check_step_types(execution.definition, unit.plan)
    graph = Graph.of(execution.definition)
    failed_step = (execution.error or {}).get("step_id") or execution.current_step
    # A step in a loop or on a parallel's branch resumes with the loop or parallel around it.
    failed_step = graph.resume_point(failed_step) if failed_step else graph.entry
    unfinished = {
        item["id"]
        for item in execution.steps["step_list"]
        if item["status"] != StepStatus.COMPLETED.value
    }
    execution.steps = progress.reset(execution.steps, unfinished)
    execution.progress = progress.fraction_done(execution.steps)
    execution.resume_from = failed_step
    execution.error = None
    execution.error_detail = None
    execution.result = None
    execution.completed_at = None
    execution.updated_at = unit.now
    announcements.control(
        unit, execution, unit.now, action="retry", actor=actor, from_step=failed_step
    )
    await _admit_or_queue(unit, execution, fresh=False)
    return execution


@dataclass(frozen=True, slots=True)
class RerunPlan:
    """What a rerun starts from: the finished execution, its first step, the merged input."""

    original: ExecutionRow
    graph: Graph
    start_at: str
    new_input: dict[str, Any]


async def plan_rerun(
    unit: Unit, execution_id: str, from_step: str, input_patch: dict[str, Any]
) -> RerunPlan:
    """A rerun's checks short of the input schema: finished, a real step, input within size."""
    original = await get(unit, execution_id)
    if original.status not in TERMINAL:
        raise ExecutionStateConflict(
            f"execution {execution_id!r} is {original.status}; rerun a finished one",
            metadata={"execution_id": execution_id, "status": original.status},
        )
    graph = Graph.of(original.definition)
    start_at = from_step or graph.entry
    if start_at not in graph.steps:
        raise InvalidInput(
            f"the workflow has no step {start_at!r}",
            violations=[FieldViolation("from_step", "must name a step of the execution")],
        )
    new_input = {**original.input, **input_patch}
    check_input_size(unit.plan, new_input, "input_patch")
    return RerunPlan(original, graph, start_at, new_input)


async def rerun(
    unit: Unit,
    actor: str,
    execution_id: str,
    from_step: str,
    input_patch: dict[str, Any],
    request_id: str = "",
    *,
    input_checked: bool = False,
) -> ExecutionRow:
    """A new execution of the same pinned version, starting at `from_step` of a finished one.

    `input_checked`: as for `start`, the merged input was checked by the caller already.
    """
    planned = await plan_rerun(unit, execution_id, from_step, input_patch)
    original, graph, start_at, new_input = (
        planned.original,
        planned.graph,
        planned.start_at,
        planned.new_input,
    )
    if not input_checked:
        check_input(original.definition, new_input, "input_patch")
    check_step_types(original.definition, unit.plan)
    execution = _new(
        unit, actor, original.workflow_id, original.workflow_version, original.definition
    )
    execution.input = new_input
    execution.request_id = request_id or None
    execution.rerun_of = original.id
    execution.rerun_from_step = start_at
    execution.resume_from = start_at
    reused = {
        step_id
        for step_id in graph.before(start_at)
        if progress.entry(original.steps, step_id)["status"] == StepStatus.COMPLETED.value
        and step_id in original.outputs
    }
    execution.outputs = {k: copy.deepcopy(v) for k, v in original.outputs.items() if k in reused}
    if graph.entry in execution.outputs:
        execution.outputs[graph.entry] = new_input
    steps = execution.steps
    for step_id in reused:
        before = progress.entry(original.steps, step_id)
        steps = progress.update(
            steps,
            step_id,
            status=StepStatus.COMPLETED.value,
            started_at=before["started_at"],
            completed_at=before["completed_at"],
            attempts=before.get("attempts", 1),
            duration_ms=before.get("duration_ms"),
            reused_from=original.id,
        )
    execution.steps = steps
    execution.progress = progress.fraction_done(steps)
    await _begin(unit, execution)
    announcements.control(
        unit,
        execution,
        unit.now,
        action="rerun",
        actor=actor,
        rerun_of=original.id,
        from_step=start_at,
        patched_fields=sorted(input_patch),
    )
    return execution
