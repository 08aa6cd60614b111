"""State changes of an execution inside one transaction: each updates the record, appends
its events and queues the tasks to publish once the transaction commits.

Callers hold the execution row locked (SELECT ... FOR UPDATE on PostgreSQL), so two
workers can never move one execution at the same time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine import admission, announcements, dispatch, flow, progress
from engine import attempts as attempt_rows
from engine.graph import Graph
from engine.instances import base
from engine.progress import StepStatus
from engine.retry import policy_of
from engine.rows import AttemptRow, ExecutionRow
from engine.runner import Outcome, Waiting, awaits_io, first_dispatched, wait_target
from engine.sizes import encoded_size
from engine.tools import StepFailure
from engine.units import Unit, flush
from persistence.models import AttemptStatus, ExecutionStatus

TERMINAL = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})


def duration_ms(start: datetime | None, end: datetime) -> int:
    return 0 if start is None else max(int((end - start).total_seconds() * 1000), 0)


async def highest_number(unit: Unit, execution: ExecutionRow, instance: str) -> int:
    """The highest attempt number `instance` has in the execution (0: none yet).

    Steps outside loops are read together, once per transaction, then kept current by
    `schedule_step` (the execution's row lock keeps other transactions from adding any
    meanwhile). A step in a loop's body is a new instance at each iteration: until a retry
    runs the execution again (`resume_from`), a new one has no attempt and nothing is read.
    """
    if "@" not in instance:
        known = unit.numbered.get(execution.id)
        if known is None:
            known = await attempt_rows.highest_numbers(unit.session, execution.id)
            unit.numbered[execution.id] = known
        return known.get(instance, 0)
    scoped = unit.scoped_numbers.setdefault(execution.id, {})
    if instance not in scoped:
        scoped[instance] = 0
        if execution.resume_from is not None:
            scoped[instance] = await attempt_rows.highest_for(unit.session, execution.id, instance)
    return scoped[instance]


def _record_number(unit: Unit, execution_id: str, instance: str, number: int) -> None:
    table = (
        unit.numbered.get(execution_id)
        if "@" not in instance
        else unit.scoped_numbers.setdefault(execution_id, {})
    )
    if table is not None:
        table[instance] = max(table.get(instance, 0), number)


def set_step(
    unit: Unit, execution: ExecutionRow, step_id: str, *, current: bool = False, **changes: Any
) -> None:
    """Change one entry of the execution's `steps` record, and its progress fraction.

    Costs the same at the last step of a long workflow as at the first: the entry is
    found by its position in the definition and the done count is carried from the
    record this transaction last wrote, so neither is recounted over the whole list.
    """
    step_id = base(step_id)
    steps = execution.steps
    known = unit.done.get(execution.id)
    done = known[1] if known is not None and known[0] is steps else progress.done_count(steps)
    hint = Graph.of(execution.definition).positions.get(step_id)
    number = progress.position(steps, step_id, hint)
    updated = progress.update(steps, step_id, current=current, number=number, **changes)
    was_done = steps["step_list"][number - 1]["status"] in progress.DONE
    done += int(updated["step_list"][number - 1]["status"] in progress.DONE) - int(was_done)
    unit.done[execution.id] = (updated, done)
    execution.patch_entry(updated, number, current)
    execution.progress = progress.fraction(done, updated)


async def schedule_step(
    unit: Unit,
    execution: ExecutionRow,
    step_id: str,
    *,
    attempt: int | None = None,
    due_at: datetime | None = None,
    slots: int | None = None,
) -> None:
    """Make an attempt of `step_id` due (now, or at `due_at` but never past the deadline).

    `slots` is the tenant's slots in use, when the caller knows it already.
    """
    highest = await highest_number(unit, execution, step_id)
    number = attempt or highest + 1  # numbers only grow: retries, resumes
    _record_number(unit, execution.id, step_id, number)
    graph = Graph.of(execution.definition)
    step = graph.step(step_id)
    due = due_at or unit.now
    if due_at is None and step.get("type") == "wait":
        due = _wait_until(unit, execution, step_id)
    if execution.deadline_at is not None and due > execution.deadline_at:
        due = execution.deadline_at
    row = unit.track_attempt(
        AttemptRow(
            {
                "tenant_id": unit.plan.tenant_id,
                "execution_id": execution.id,
                "step_id": step_id,
                "attempt": number,
                "status": AttemptStatus.SCHEDULED,
                "due_at": due,
                "claims": 0,
            },
            stored=False,
        )
    )
    if due > unit.now:
        due_at = due  # a durable timer: the dispatch row fires it, not this transaction
    if (
        due_at is None
        and unit.chain is not None
        and (execution.deadline_at is None or unit.now < execution.deadline_at)
        and unit.chain.takes(execution.id, step)
    ):
        unit.chain.due.append(row)  # runs next in this transaction: no dispatch row
        unit.undispatched.add((execution.id, step_id, number))
        return
    await _dispatch(unit, execution, step_id, number, due, _on_io_lane(graph, step_id, step), slots)


async def _dispatch(
    unit: Unit,
    execution: ExecutionRow,
    instance: str,
    attempt: int,
    due: datetime,
    awaits_io: bool,
    slots: int | None = None,
) -> None:
    """The attempt's dispatch row, due at `due`, and its task to publish if that is soon."""
    ref = dispatch.schedule(
        unit.dispatch_rows,
        tenant_id=unit.plan.tenant_id,
        execution_id=execution.id,
        step_id=instance,
        attempt=attempt,
        due_at=due,
        now=unit.now,
        grace=unit.timing.grace,
        max_countdown=unit.timing.max_countdown,
        rank=dispatch.rank_for(await _slots_in_use(unit) if slots is None else slots),
        awaits_io=awaits_io,
    )
    if ref is not None:
        unit.publish.append(ref)


async def _slots_in_use(unit: Unit) -> int:
    """The tenant's slots in use, for a dispatch rank: read once per transaction (a parallel
    makes all its branches due in one)."""
    if unit.slots_in_use is None:
        unit.slots_in_use = await admission.slots_in_use(unit.session, unit.plan.tenant_id)
    return unit.slots_in_use


def _on_io_lane(graph: Graph, step_id: str, step: Mapping[str, Any]) -> bool:
    """Whether the attempt's task goes to the workers' I/O lane: a step of an I/O-bound
    tool, or the entry step when the inline steps from it lead to one (the worker that
    takes it runs them ahead of that step: `engine.engine`)."""
    if awaits_io(step):
        return True
    if base(step_id) != graph.entry:
        return False
    ahead = first_dispatched(graph, step_id)
    return ahead is not None and awaits_io(ahead)


async def settle(unit: Unit, execution: ExecutionRow, attempt: AttemptRow) -> None:
    """The attempt finished: its dispatch row goes (an attempt run in a chain has none)."""
    key = (execution.id, attempt.step_id, attempt.attempt)
    if key not in unit.undispatched:
        await dispatch.done(unit.session, *key)


async def admit(unit: Unit, execution: ExecutionRow, slots: int, *, fresh: bool = False) -> None:
    """A slot is held for it (`slots` now in use): the clock starts, its first step is due.

    A `fresh` execution has never run a step, so its first attempt is number 1.
    """
    execution.status = ExecutionStatus.PENDING
    execution.holds_slot = True
    execution.started_at = unit.now
    limit = unit.plan.limits.max_execution_seconds
    execution.deadline_at = None if limit is None else unit.now + timedelta(seconds=limit)
    execution.updated_at = unit.now
    announcements.execution_update(
        unit, execution, unit.now, message="admitted; waiting for a worker"
    )
    graph = Graph.of(execution.definition)
    if fresh:
        unit.numbered.setdefault(execution.id, {})  # it has no attempts: nothing to read
    await schedule_step(
        unit,
        execution,
        execution.resume_from or graph.entry,
        attempt=1 if fresh else None,
        slots=slots,
    )


async def claim(
    unit: Unit, execution: ExecutionRow, attempt: AttemptRow, task_id: str | None, *, lease: bool
) -> None:
    """The attempt starts: step and execution in progress, and (if `lease`) its lease taken.

    A step run inside this same transaction needs no lease: it ends before anyone
    else can see that it started.
    """
    graph = Graph.of(execution.definition)
    unit.tally.step_started(attempt.due_at, unit.now)
    attempt.status = AttemptStatus.RUNNING
    attempt.claims += 1
    attempt.started_at = unit.now
    attempt.task_id = task_id
    execution.status = ExecutionStatus.IN_PROGRESS
    execution.current_step = base(attempt.step_id)
    set_step(
        unit,
        execution,
        attempt.step_id,
        current=True,
        status=StepStatus.IN_PROGRESS.value,
        started_at=progress.iso(unit.now),
        completed_at=None,
        attempts=attempt.attempt,
    )
    execution.updated_at = unit.now
    name = graph.name(attempt.step_id)
    note = f"{name} started" + (f" (attempt {attempt.attempt})" if attempt.attempt > 1 else "")
    announcements.execution_update(
        unit, execution, unit.now, step_name=name, started_at=unit.now, message=note
    )
    if lease:
        await dispatch.hold(
            unit.session,
            execution.id,
            attempt.step_id,
            attempt.attempt,
            unit.now + unit.timing.lease,
        )


async def succeed(
    unit: Unit, execution: ExecutionRow, attempt: AttemptRow, outcome: Outcome
) -> None:
    """The attempt completed: record its output, then go on or end the execution.

    An output over the plan's `max_output_bytes` is never stored: the attempt fails instead
    (`output_too_large`, not retried, then the step's error policy).
    """
    if outcome.waiting is not None:
        await _await_callback(unit, execution, attempt, outcome.output, outcome.waiting)
        return
    size, limit = encoded_size(outcome.output), unit.plan.limits.max_output_bytes
    if size > limit:
        message = f"the step's output is {size} bytes as compact JSON; the plan allows {limit}"
        failure = StepFailure("output_too_large", message, retryable=False)
        await fail_attempt(unit, execution, attempt, failure)
        return
    graph = Graph.of(execution.definition)
    step = graph.step(attempt.step_id)
    elapsed = duration_ms(attempt.started_at, unit.now)
    unit.tally.step_ended(str(step.get("type")), "completed", attempt.started_at, unit.now)
    attempt.status = AttemptStatus.COMPLETED
    attempt.finished_at = unit.now
    attempt.output = outcome.output
    await settle(unit, execution, attempt)
    execution.patch_output(attempt.step_id, outcome.output)
    set_step(
        unit,
        execution,
        attempt.step_id,
        status=StepStatus.COMPLETED.value,
        completed_at=progress.iso(unit.now),
        duration_ms=elapsed,
        error=None,
    )
    execution.updated_at = unit.now
    announcements.step_completed(
        unit,
        execution,
        unit.now,
        step_id=base(attempt.step_id),
        step_name=graph.name(attempt.step_id),
        output=outcome.output,
        duration_ms=elapsed,
        next_step=outcome.next_step,
    )
    top_level = "@" not in attempt.step_id and attempt.step_id not in graph.branch_of
    if step.get("type") == "output" and top_level:
        execution.result = outcome.output if isinstance(outcome.output, dict) else {}
    await flow.go_on(unit, execution, attempt.step_id, outcome.next_step, outcome.output)


async def _await_callback(
    unit: Unit, execution: ExecutionRow, attempt: AttemptRow, output: Any, waiting: Waiting
) -> None:
    """A webhook step made its call: it stays running, holding no worker, until its callback
    (`engine.webhooks.complete`) or its timeout, when its dispatch row fires again."""
    expires = unit.now + timedelta(seconds=waiting.timeout_seconds)
    callback = {"digest": waiting.digest, "event": waiting.event, "expires_at": expires.isoformat()}
    attempt.output = {**output, "callback": callback}
    await settle(unit, execution, attempt)
    fire = expires if execution.deadline_at is None else min(expires, execution.deadline_at)
    await _dispatch(unit, execution, attempt.step_id, attempt.attempt, fire, awaits_io=False)
    unit.undispatched.discard((execution.id, attempt.step_id, attempt.attempt))
    set_step(
        unit,
        execution,
        attempt.step_id,
        callback={
            "token": waiting.token,
            "event": waiting.event,
            "expires_at": progress.iso(expires),
        },
    )
    name = Graph.of(execution.definition).name(attempt.step_id)
    announcements.execution_update(
        unit,
        execution,
        unit.now,
        step_name=name,
        started_at=attempt.started_at,
        message=f"{name} waits for its callback ({waiting.event})",
    )


async def fail_attempt(
    unit: Unit, execution: ExecutionRow, attempt: AttemptRow, failure: StepFailure
) -> None:
    """The attempt failed: retry with backoff, or apply the step's error policy."""
    graph = Graph.of(execution.definition)
    step = graph.step(attempt.step_id)
    name = graph.name(attempt.step_id)
    error = failure.as_dict()
    unit.tally.step_ended(str(step.get("type")), "failed", attempt.started_at, unit.now)
    attempt.status = AttemptStatus.FAILED
    attempt.finished_at = unit.now
    attempt.error = error
    await settle(unit, execution, attempt)
    if step.get("type") == "webhook":
        set_step(unit, execution, attempt.step_id, callback=None)
    execution.updated_at = unit.now
    if execution.deadline_at is not None and unit.now >= execution.deadline_at:
        await time_out(unit, execution, attempt.step_id)
        return
    policy = policy_of(step)
    if policy.allows_retry(attempt.attempt, failure.code, failure.retryable):
        wait = policy.delay(attempt.attempt)
        set_step(unit, execution, attempt.step_id, error=error)
        announcements.execution_update(
            unit,
            execution,
            unit.now,
            step_name=name,
            started_at=attempt.started_at,
            message=f"{name} failed ({failure.code}): retrying in {wait:.1f}s",
        )
        await schedule_step(
            unit,
            execution,
            attempt.step_id,
            attempt=attempt.attempt + 1,
            due_at=unit.now + timedelta(seconds=wait),
        )
        return
    continues = step.get("on_error") == "continue" and step.get("type") != "condition"
    set_step(
        unit,
        execution,
        attempt.step_id,
        status=StepStatus.FAILED.value,
        completed_at=progress.iso(unit.now),
        duration_ms=duration_ms(attempt.started_at, unit.now),
        error=error,
    )
    announcements.step_failed(
        unit,
        execution,
        unit.now,
        step_id=base(attempt.step_id),
        step_name=name,
        attempts=attempt.attempt,
        error=error,
        continues=continues,
    )
    if continues:
        await flow.go_on(unit, execution, attempt.step_id, graph.next_of(attempt.step_id), None)
        return
    if await flow.failed(unit, execution, attempt.step_id, error):
        return
    await fail(unit, execution, {**error, "step_id": base(attempt.step_id), "step_name": name})


def _readable(error: dict[str, Any]) -> str:
    where = f"Step '{error['step_name']}' failed: " if error.get("step_name") else ""
    details = f" ({error['details']})" if error.get("details") else ""
    return f"{where}{error.get('message', '')}{details}"


async def complete(unit: Unit, execution: ExecutionRow) -> None:
    execution.status = ExecutionStatus.COMPLETED
    execution.steps = progress.finish(execution.steps, StepStatus.SKIPPED)
    execution.progress = 1.0
    await _end(unit, execution)


async def fail(unit: Unit, execution: ExecutionRow, error: dict[str, Any]) -> None:
    execution.status = ExecutionStatus.FAILED
    execution.error = error
    execution.error_detail = _readable(error)
    execution.steps = progress.finish(execution.steps, StepStatus.SKIPPED)
    announcements.execution_error(unit, execution, unit.now, error=error)
    await _end(unit, execution)


async def time_out(unit: Unit, execution: ExecutionRow, step_id: str | None) -> None:
    """The plan's maximum execution time passed: fail with code `timeout`."""
    limit = unit.plan.limits.max_execution_seconds
    graph = Graph.of(execution.definition)
    if step_id is not None:
        execution.steps = progress.update(
            execution.steps,
            step_id,
            status=StepStatus.FAILED.value,
            completed_at=progress.iso(unit.now),
            error={"code": "timeout", "message": "stopped at the execution deadline"},
        )
    await fail(
        unit,
        execution,
        {
            "code": "timeout",
            "message": f"the execution exceeded its maximum time of {limit} s",
            "details": f"deadline {progress.iso(execution.deadline_at)}",
            "step_id": step_id,
            "step_name": graph.name(step_id) if step_id else None,
        },
    )


async def cancel(unit: Unit, execution: ExecutionRow, actor: str) -> None:
    execution.status = ExecutionStatus.CANCELLED
    execution.cancelled_by = actor
    execution.steps = progress.finish(execution.steps, StepStatus.CANCELLED)
    await _end(unit, execution)


async def _end(unit: Unit, execution: ExecutionRow) -> None:
    """Terminal: stop its attempts, announce, free its slot and admit whoever waits."""
    unit.tally.finished.append(execution.status.value)
    execution.completed_at = unit.now
    execution.updated_at = unit.now
    held, execution.holds_slot = execution.holds_slot, False
    # What this transaction changed is written first: the statements below act on it.
    await flush(unit)
    await attempt_rows.cancel_unfinished(unit.session, execution.id, unit.now)
    await dispatch.drop_execution(unit.session, execution.id)
    announcements.execution_completed(unit, execution, unit.now)
    if held:
        await admission.lock_tenant(unit.session, unit.plan.tenant_id)
        await admission.give_back_slot(unit.session, unit.plan)
        await admit_waiting(unit)


async def admit_waiting(unit: Unit, limit: int = 10) -> None:
    """Admit the tenant's oldest queued executions while slots are free (lock held)."""
    for queued in await admission.oldest_queued(unit.session, limit):
        waiting = unit.track(queued)
        slots = await admission.try_take_slot(unit.session, unit.plan)
        if slots is None:
            return
        await admit(unit, waiting, slots, fresh=waiting.started_at is None)


def _wait_until(unit: Unit, execution: ExecutionRow, instance: str) -> datetime:
    """When a `wait` step's attempt falls due: after its `seconds`, or at the time its
    `until` path names (now, if that has passed or cannot be read: the step then fails
    when it runs, saying why)."""
    graph = Graph.of(execution.definition)
    step = graph.step(instance)
    config = step.get("config") or {}
    if "seconds" in config:
        return unit.now + timedelta(seconds=float(config["seconds"]))
    try:
        moment = wait_target(step, graph.context(instance, execution.input, execution.outputs))
    except StepFailure:
        return unit.now
    return unit.now if moment is None else max(moment, unit.now)
