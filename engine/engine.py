"""The engine's entry points for workers and periodic jobs: run an attempt, sweep, purge.

`run_attempt` is what one step task does. A step with no outside effect (input,
output, condition, inline tools) is claimed, run and recorded in one transaction. Any
other step runs outside any transaction, then is recorded if the attempt is still this
worker's: a worker that lost its lease, or whose execution was cancelled meanwhile,
records nothing. Inline steps that a transaction makes due run in that same
transaction, down the chain up to a budget (`units.Chain`).

A dispatched step's claim is deferred when nothing else can run the attempt meanwhile:
its task was published once (the sweeper has not sent a second copy) and the sweeper
will not send one for longer than a checkpoint. The step is read without a transaction
of its own (`engine.shared_reads` on PostgreSQL) and runs; if it ends within a
checkpoint, its start and its end are recorded in one transaction, so a short step
costs one commit. One still running at the first checkpoint is claimed then (its start
becomes visible and its lease runs) and goes on as a claimed step. A republished or
taken-over attempt is claimed before it runs, as is one whose execution's deadline
has passed.

The entry step, taken on the I/O lane, goes one further (`_run_ahead`): its inline steps
run in memory up to the I/O-bound step they lead to, which then runs deferred as above and
records them with its own claim.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from math import inf
from typing import Any, Final

from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import SQLAlchemyError

from engine import announcements, dispatch, flow, retention, traces, transitions
from engine import attempts as attempt_rows
from engine import executions as execution_rows
from engine.attempts import ATTEMPTS
from engine.dispatch import DISPATCH, TaskRef
from engine.durations import seconds
from engine.events import EVENTS
from engine.executions import EXECUTIONS
from engine.graph import Graph
from engine.rows import AttemptRow, ExecutionRow
from engine.runner import (
    Outcome,
    awaits_io,
    check_tier,
    first_dispatched,
    plan_bound,
    run_step,
    runs_inline,
)
from engine.shared_reads import SharedReads
from engine.sizes import encoded_size
from engine.spans import attempt_span
from engine.tools import StepFailure, ToolCall, ToolRegistry
from engine.topics import NOTIFICATION
from engine.transitions import TERMINAL
from engine.units import Chain, Unit, open_unit, timing_of, utcnow
from engine.webhooks import expired, timed_out, waiting_of
from foundation import tracing
from foundation.log_context import working_on
from foundation.outages import is_outage
from foundation.settings import Settings
from persistence.models import AttemptStatus, DispatchState, Notification
from tenancy import TenantId
from tenancy.database import TenantDatabase
from tenancy.scoping import prebuilt
from tiers import PLANS, planned_transaction
from tiers import tenants as tenant_rows

logger = logging.getLogger(__name__)

# How far one transaction goes down a chain of inline steps before it dispatches the next.
CHAIN_STEPS = 64
CHAIN_SECONDS = 0.25

OUTAGE_PATIENCE_SECONDS = 300.0
"""How long a finished step's record is tried again while the database cannot be reached.
Its lease stands meanwhile (`engine.dispatch`); past this, the worker lets it go."""

SMALLEST_OUTPUT_LIMIT = min(limits.max_output_bytes for limits in PLANS.values())
"""An output run ahead is at most this large: every plan would record it."""


@dataclass(frozen=True, slots=True)
class AttemptKey:
    """Which attempt a step task names; the tenant comes from `tenancy.decode_tenant`."""

    tenant_id: TenantId
    execution_id: str
    step_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a worker needs to run a claimed attempt outside a transaction."""

    key: AttemptKey
    claims: int | None
    """The attempt's claim count when this worker claimed it; None: not claimed yet."""
    started: datetime
    step: dict[str, Any]
    context: Mapping[str, Any]
    timeout: float
    bounded_by_deadline: bool
    task_id: str | None = None
    ahead: tuple[Ran, ...] = ()
    """Inline steps from the entry run in memory before this one: recorded with its claim."""
    traced: bool = False
    """A test run's step: what it sees is kept with its attempt (`engine.traces`)."""
    trace_parent: str | None = None
    """Its execution's trace (`foundation.tracing`): the attempt's span joins it."""


@dataclass(frozen=True, slots=True)
class Ran:
    """An inline step run ahead of its record (see `Engine._run_ahead`)."""

    step_id: str
    outcome: Outcome
    started: datetime
    finished: datetime
    log: list[Any]


class Engine:
    """Advances executions in one process; every method is one or two short transactions."""

    def __init__(self, database: TenantDatabase, tools: ToolRegistry, settings: Settings) -> None:
        self.database = database
        self.tools = tools
        self.timing = timing_of(settings)
        # Renew the lease (and look for a cancellation) this often while a step runs; at
        # least three times a lease, so one slow renewal never loses it.
        self.checkpoint_seconds = min(settings.lease_seconds / 3, settings.checkpoint_seconds)
        self._reads = SharedReads(database)
        self._outside: dict[AttemptKey, tuple[Claimed, asyncio.Task[Outcome]]] = {}
        """The attempts this process runs outside a transaction now, for `hand_back`."""

    async def close(self) -> None:
        """Let go of the connection its shared reads hold, if any."""
        await self._reads.close()

    async def run_attempt(
        self, key: AttemptKey, task_id: str | None = None, *, io_lane: bool = False
    ) -> list[TaskRef]:
        """Run one step attempt if it is still due; the tasks to publish afterwards.

        `io_lane`: the caller runs steps of I/O-bound tools (`workers.io_lane`), so the
        entry's inline steps may run ahead of the one they lead to.
        """
        with working_on(key.tenant_id, key.execution_id, key.step_id):
            claimed, publish = await self.begin_attempt(key, task_id, io_lane=io_lane)
            if claimed is None:
                return publish
            return publish + await self.complete_attempt(claimed)

    async def begin_attempt(
        self, key: AttemptKey, task_id: str | None = None, *, io_lane: bool = False
    ) -> tuple[Claimed | None, list[TaskRef]]:
        """Claim the attempt if it is still due: a step with no outside effect runs and is
        recorded here (None comes back); any other comes back claimed, under its lease,
        for `complete_attempt`. Also the tasks to publish now."""
        publish: list[TaskRef] = []
        with working_on(key.tenant_id, key.execution_id, key.step_id):
            claimed = await self._start(key, task_id, publish, io_lane)
        return claimed, publish

    async def complete_attempt(self, claimed: Claimed) -> list[TaskRef]:
        """Run a claimed attempt outside any transaction and record it; the tasks to publish.

        Until it is recorded the lease stands for it (before a deferred claim, its
        dispatch row does): if this process dies meanwhile, the lease runs out (or the
        row's time passes) and the sweeper has the attempt run again.
        """
        key = claimed.key
        with working_on(key.tenant_id, key.execution_id, key.step_id):
            ran = await self._run_outside(claimed)
            if ran is None:
                return []
            return await self._finish_through_outages(*ran)

    async def _finish_through_outages(
        self, claimed: Claimed, result: Outcome | StepFailure, call: ToolCall
    ) -> list[TaskRef]:
        """Record the attempt, trying again while the database cannot be reached.

        A result dropped in an outage would have the step run again by another worker
        (and counted as a takeover, as if this one had died). Recording late is safe: the
        record checks, under the execution's lock, that the attempt is still this one's.
        """
        gives_up = time.monotonic() + OUTAGE_PATIENCE_SECONDS
        pause, tries = 0.05, 0
        while True:
            try:
                published = await self._finish(claimed, result, call)
            except SQLAlchemyError as error:
                if not is_outage(error) or time.monotonic() + pause > gives_up:
                    raise
                if tries == 0:
                    logger.warning(
                        "database unreachable: %s is recorded when it is back", claimed.key
                    )
                tries += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            if tries:
                logger.info("recorded %s after %d tries", claimed.key, tries + 1)
            return published

    async def _start(
        self, key: AttemptKey, task_id: str | None, publish: list[TaskRef], io_lane: bool
    ) -> Claimed | None:
        deferred = await self._deferred(key, task_id, io_lane)
        if deferred is not None:
            return deferred
        async with open_unit(self.database, key.tenant_id, self.timing) as unit:
            execution, attempt = await _locked(unit, key)
            if execution is None or attempt is None:
                return None
            if not await self._may_claim(unit, execution, attempt):
                publish += unit.publish
                return None
            graph = Graph.of(execution.definition)
            step = dict(graph.step(key.step_id))
            context = graph.context(key.step_id, execution.input, execution.outputs)
            timeout, bounded = self._timeout_for(step, execution.deadline_at, unit.now)
            inline = runs_inline(step, self.tools)
            if not inline:
                try:
                    check_tier(step, unit.plan)
                except StepFailure as refused:
                    await transitions.fail_attempt(unit, execution, attempt, refused)
                    publish += unit.publish
                    return None
            await transitions.claim(unit, execution, attempt, task_id, lease=not inline)
            if inline:
                unit.chain = self._chain(execution)
                await self._run_inline(unit, key, execution, attempt, step, context, timeout)
                await self._run_chain(unit, execution, task_id)
            publish += unit.publish
            if inline:
                return None
            return Claimed(
                key,
                attempt.claims,
                unit.now,
                step,
                context,
                timeout,
                bounded,
                task_id,
                traced=execution.test,
                trace_parent=execution.trace_parent,
            )

    async def _deferred(
        self, key: AttemptKey, task_id: str | None, io_lane: bool = False
    ) -> Claimed | None:
        """The attempt to run unclaimed, if its claim may wait (see the module); else None.

        One read, no row lock and no commit: the attempt, its dispatch row and what
        running it needs (on PostgreSQL through the process's `SharedReads`).
        """
        now = utcnow()
        tenant = key.tenant_id
        try:
            rows = await self._reads.read(
                tenant,
                _DEFERRED_READ,
                {
                    "tenant": tenant,
                    "execution_id": key.execution_id,
                    "step_id": key.step_id,
                    "attempt": key.attempt,
                    "due_by": now + timedelta(seconds=1),
                },
            )
        except SQLAlchemyError:
            logger.warning("could not read %s ahead; claiming it first", key, exc_info=True)
            return None
        found = rows[0] if rows else None
        if (
            found is None
            or found.test  # a test run's steps are claimed first: the claim knows it is one
            # The sweeper must not send it again before the first checkpoint claims it.
            or found.fire_at - now <= timedelta(seconds=2 * self.checkpoint_seconds)
            or found.status in TERMINAL
            or (found.deadline_at is not None and now >= found.deadline_at)
        ):
            return None
        graph = Graph.of(found.definition)
        step = dict(graph.step(key.step_id))
        if plan_bound(step):
            return None  # its plan is checked before it runs: the claim reads it
        context: Mapping[str, Any] = graph.context(key.step_id, found.input, found.outputs)
        ahead: tuple[Ran, ...] = ()
        if runs_inline(step, self.tools):
            if not io_lane or key.attempt != 1 or key.step_id != graph.entry:
                return None
            ran = await self._run_ahead(
                key, graph, step, context, found.deadline_at, found.trace_parent
            )
            if ran is None:
                return None
            ahead, step, context = ran
            key, now = replace(key, step_id=str(step["id"]), attempt=1), utcnow()
        timeout, bounded = self._timeout_for(step, found.deadline_at, now)
        return Claimed(
            key,
            None,
            now,
            step,
            context,
            timeout,
            bounded,
            task_id,
            ahead,
            trace_parent=found.trace_parent,
        )

    async def _run_ahead(
        self,
        key: AttemptKey,
        graph: Graph,
        step: dict[str, Any],
        context: Mapping[str, Any],
        deadline: datetime | None,
        trace_parent: str | None,
    ) -> tuple[tuple[Ran, ...], dict[str, Any], Mapping[str, Any]] | None:
        """Run the entry's inline steps in memory up to the I/O-bound step they lead to.

        That step's record then records them too, in one transaction (its first
        checkpoint's, or its finish's): one commit and one task for all of them. They have
        no outside effect, so running them again after a crash changes nothing; the step
        they lead to runs again with the same attempt key, as any step a worker lost.
        None: the ordinary path instead (a branch, a failure, an output too large for any
        plan, or no I/O-bound step to run).
        """
        target = first_dispatched(graph, key.step_id)
        if target is None or not awaits_io(target):
            return None
        ran: list[Ran] = []
        while str(step["id"]) != target["id"]:
            started = utcnow()
            limit, _ = self._timeout_for(step, deadline, started)
            call = _call(replace(key, step_id=str(step["id"]), attempt=1), limit)
            try:
                with attempt_span(
                    trace_parent, key.tenant_id, key.execution_id, str(step["id"]), 1, step
                ):
                    outcome = await run_step(step, context, call, self.tools)
            except StepFailure:
                return None
            if outcome.next_step is None or encoded_size(outcome.output) > SMALLEST_OUTPUT_LIMIT:
                return None
            ran.append(Ran(str(step["id"]), outcome, started, utcnow(), call.log))
            context = ChainMap({str(step["id"]): outcome.output}, context)  # type: ignore[arg-type]
            step = dict(graph.step(outcome.next_step))
        return tuple(ran), step, context

    async def _run_inline(
        self,
        unit: Unit,
        key: AttemptKey,
        execution: ExecutionRow,
        attempt: AttemptRow,
        step: dict[str, Any],
        context: Mapping[str, Any],
        limit_seconds: float,
    ) -> None:
        """Run a step with no outside effect and record it, in the claiming transaction."""
        call = _call(key, limit_seconds, traced=execution.test)
        span = attempt_span(
            execution.trace_parent, key.tenant_id, key.execution_id, key.step_id, key.attempt, step
        )
        try:
            with span as current:
                try:
                    check_tier(step, unit.plan)
                    if step.get("type") in flow.CONTROL_TYPES:
                        begun = await flow.begin(unit, execution, attempt, step, context)
                        if begun is not None:
                            await transitions.succeed(unit, execution, attempt, begun)
                        return
                    outcome = await run_step(step, context, call, self.tools)
                except StepFailure as failure:
                    tracing.fail(current, failure.code, failure.message)
                    raise
        except StepFailure as failure:
            traces.keep(attempt, call)
            await transitions.fail_attempt(unit, execution, attempt, failure)
            return
        announcements.log_lines(unit, execution, unit.now, attempt.step_id, call.log)
        traces.keep(attempt, call)
        await transitions.succeed(unit, execution, attempt, outcome)

    def _chain(self, execution: ExecutionRow) -> Chain:
        return Chain.budget(
            execution.id, lambda step: runs_inline(step, self.tools), CHAIN_STEPS, CHAIN_SECONDS
        )

    async def _run_chain(self, unit: Unit, execution: ExecutionRow, task_id: str | None) -> None:
        """Run the inline attempts this transaction made due (`unit.chain`), in order."""
        due = unit.chain.due if unit.chain is not None else []
        while due and execution.status not in TERMINAL:
            attempt = due.pop(0)
            unit.now = utcnow()
            graph = Graph.of(execution.definition)
            step = dict(graph.step(attempt.step_id))
            context = graph.context(attempt.step_id, execution.input, execution.outputs)
            timeout, _ = self._timeout_for(step, execution.deadline_at, unit.now)
            key = AttemptKey(unit.plan.tenant_id, execution.id, attempt.step_id, attempt.attempt)
            await transitions.claim(unit, execution, attempt, task_id, lease=False)
            await self._run_inline(unit, key, execution, attempt, step, context, timeout)
        for left in due:  # the execution ended first (a parallel branch failed it)
            left.status, left.finished_at = AttemptStatus.CANCELLED, unit.now
        due.clear()

    async def _may_claim(self, unit: Unit, execution: ExecutionRow, attempt: AttemptRow) -> bool:
        """Whether this delivery should run the attempt; settles the ones it should not."""
        if execution.status in TERMINAL:
            return False
        if attempt.status == AttemptStatus.SCHEDULED:
            if attempt.due_at > unit.now + timedelta(seconds=1):
                return False  # early duplicate: the due delivery or the sweeper will come
        elif attempt.status == AttemptStatus.RUNNING and waiting_of(attempt.output) is not None:
            # A webhook step waits for its callback: its timer fired (or came early).
            if execution.deadline_at is not None and unit.now >= execution.deadline_at:
                await transitions.time_out(unit, execution, attempt.step_id)
            elif expired(attempt.output, unit.now):
                step = Graph.of(execution.definition).step(attempt.step_id)
                await transitions.fail_attempt(unit, execution, attempt, timed_out(step))
            return False
        elif attempt.status == AttemptStatus.RUNNING:
            lease = await unit.session.scalar(
                select(DISPATCH.c.lease_until).where(
                    DISPATCH.c.execution_id == attempt.execution_id,
                    DISPATCH.c.step_id == attempt.step_id,
                    DISPATCH.c.attempt == attempt.attempt,
                    DISPATCH.c.state == DispatchState.RUNNING,
                )
            )
            if lease is None or lease > unit.now:
                return False  # still held by a live worker
            if await dispatch.restarted_since(unit.session, unit.now - unit.timing.lease):
                return False  # it ran out while the database was down (`engine.dispatch`)
            if attempt.claims >= unit.timing.max_takeovers:
                await transitions.fail_attempt(
                    unit,
                    execution,
                    attempt,
                    StepFailure(
                        "worker_lost",
                        f"the worker running this step stopped {attempt.claims} times",
                    ),
                )
                return False
            unit.tally.takeovers += 1
            logger.warning(
                "lease of %s/%s#%d expired; running it again",
                attempt.execution_id,
                attempt.step_id,
                attempt.attempt,
            )
        else:
            return False
        if execution.deadline_at is not None and unit.now >= execution.deadline_at:
            await transitions.time_out(unit, execution, None)
            return False
        return True

    def _timeout_for(
        self, step: Mapping[str, Any], deadline: datetime | None, now: datetime
    ) -> tuple[float, bool]:
        """The attempt's time limit, and whether the execution deadline is what bounds it."""
        own = seconds(step.get("timeout")) or self.timing.default_step_timeout.total_seconds()
        if deadline is None:
            return own, False
        left = max((deadline - now).total_seconds(), 0.0)
        return (left, True) if left < own else (own, False)

    async def _run_outside(
        self, claimed: Claimed
    ) -> tuple[Claimed, Outcome | StepFailure, ToolCall] | None:
        """Run the step, claiming it at the first checkpoint if it was not, then renewing
        the lease; None when the attempt is no longer ours."""
        key = claimed.key
        with attempt_span(
            claimed.trace_parent,
            key.tenant_id,
            key.execution_id,
            key.step_id,
            key.attempt,
            claimed.step,
        ) as current:
            ran = await self._run_watched(claimed)
            if ran is not None and isinstance(ran[1], StepFailure):
                tracing.fail(current, ran[1].code, ran[1].message)
            return ran

    async def _run_watched(
        self, claimed: Claimed
    ) -> tuple[Claimed, Outcome | StepFailure, ToolCall] | None:
        """`_run_outside`'s work: the step as a task (its own spans under the attempt's),
        watched at every checkpoint."""
        call = _call(claimed.key, claimed.timeout, traced=claimed.traced)
        work = asyncio.create_task(run_step(claimed.step, claimed.context, call, self.tools))
        ends = time.monotonic() + claimed.timeout
        self._outside[claimed.key] = (claimed, work)
        try:
            while True:
                left = ends - time.monotonic()
                finished, _ = await asyncio.wait(
                    {work}, timeout=min(self.checkpoint_seconds, max(left, 0))
                )
                if finished:
                    break
                if time.monotonic() >= ends:
                    work.cancel()
                    code = "timeout" if claimed.bounded_by_deadline else "step_timeout"
                    failure = StepFailure(
                        code,
                        "the step did not finish in time",
                        details=f"Timeout after {int(claimed.timeout * 1000)}ms",
                    )
                    return claimed, failure, call
                try:
                    if claimed.claims is None:
                        late = await self._claim_late(claimed)
                        if late is None:
                            work.cancel()
                            return None
                        claimed = late
                        self._outside[claimed.key] = (claimed, work)
                    elif not await self._renew(claimed):
                        work.cancel()
                        return None
                except SQLAlchemyError as error:
                    if not is_outage(error):
                        raise
                    # Nobody can take the attempt over while the database is away.
                    logger.warning("database unreachable at a checkpoint of %s", claimed.key)
        finally:
            self._outside.pop(claimed.key, None)
            if not work.done():
                work.cancel()
        try:
            return claimed, work.result(), call
        except StepFailure as failure:
            return claimed, failure, call
        except asyncio.CancelledError:
            return None
        except Exception as error:
            logger.exception("step %s of %s raised", claimed.key.step_id, claimed.key.execution_id)
            raised = StepFailure("step_error", f"the step raised {type(error).__name__}")
            return claimed, raised, call

    async def _claim_late(self, claimed: Claimed) -> Claimed | None:
        """Claim a deferred attempt still running at its first checkpoint; None if it is
        no longer due (the execution ended, or the attempt was settled meanwhile)."""
        async with open_unit(self.database, claimed.key.tenant_id, self.timing) as unit:
            if claimed.ahead:
                recorded = await self._record_ahead(unit, claimed, lease=True)
                if recorded is None:
                    return None
                return replace(claimed, claims=recorded[1].claims, ahead=())
            execution, attempt = await _locked(unit, claimed.key)
            if (
                execution is None
                or attempt is None
                or execution.status in TERMINAL
                or attempt.status != AttemptStatus.SCHEDULED
            ):
                return None
            await self._claim_at_start(unit, claimed, execution, attempt, lease=True)
            return replace(claimed, claims=attempt.claims)

    async def _record_ahead(
        self, unit: Unit, claimed: Claimed, *, lease: bool
    ) -> tuple[ExecutionRow, AttemptRow] | None:
        """Record the steps run ahead of `claimed` (`_run_ahead`) and claim it, as of when
        each ran; its execution and attempt, or None when the entry is no longer due (the
        execution ended or was cancelled, or another delivery took the entry)."""
        key = claimed.key
        entry = replace(key, step_id=claimed.ahead[0].step_id, attempt=1)
        execution, attempt = await _locked(unit, entry)
        if (
            execution is None
            or attempt is None
            or execution.status in TERMINAL
            or attempt.status != AttemptStatus.SCHEDULED
            or (execution.deadline_at is not None and unit.now >= execution.deadline_at)
        ):
            return None
        wanted = {ran.step_id for ran in claimed.ahead} | {key.step_id}
        # No time budget: these steps ran already, and a slow transaction must not send the
        # step that is running here to the broker.
        unit.chain = Chain(execution.id, lambda step: step.get("id") in wanted, len(wanted), inf)
        now = unit.now
        for ran in claimed.ahead:
            if attempt is None or attempt.step_id != ran.step_id:
                break
            unit.now = ran.started
            await transitions.claim(unit, execution, attempt, claimed.task_id, lease=False)
            unit.now = ran.finished
            announcements.log_lines(unit, execution, unit.now, ran.step_id, ran.log)
            await transitions.succeed(unit, execution, attempt, ran.outcome)
            attempt = unit.chain.due.pop(0) if unit.chain.due else None
        unit.now, unit.chain = now, None
        if attempt is None or attempt.step_id != key.step_id or attempt.attempt != key.attempt:
            logger.warning("the steps run ahead of %s led elsewhere: dropping its result", key)
            return None
        if lease:
            # Taken here, not published: its lease needs a dispatch row of its own.
            dispatch.running(
                unit.dispatch_rows,
                tenant_id=key.tenant_id,
                execution_id=key.execution_id,
                step_id=key.step_id,
                attempt=key.attempt,
                lease_until=unit.now + self.timing.lease,
                awaits_io=True,
            )
            unit.undispatched.discard((key.execution_id, key.step_id, key.attempt))
        await self._claim_at_start(unit, claimed, execution, attempt, lease=False)
        return execution, attempt

    async def _claim_at_start(
        self,
        unit: Unit,
        claimed: Claimed,
        execution: ExecutionRow,
        attempt: AttemptRow,
        *,
        lease: bool,
    ) -> None:
        """Claim a deferred attempt as of when it started to run."""
        now, unit.now = unit.now, claimed.started
        try:
            await transitions.claim(unit, execution, attempt, claimed.task_id, lease=lease)
        finally:
            unit.now = now

    async def _renew(self, claimed: Claimed) -> bool:
        """Extend the lease if the attempt is still this worker's and the execution runs."""
        key = claimed.key
        async with self.database.transaction(key.tenant_id) as session:
            row = (
                await session.execute(
                    select(EXECUTIONS.c.status, ATTEMPTS.c.status, ATTEMPTS.c.claims)
                    .join(ATTEMPTS, ATTEMPTS.c.execution_id == EXECUTIONS.c.id)
                    .where(
                        EXECUTIONS.c.id == key.execution_id,
                        ATTEMPTS.c.step_id == key.step_id,
                        ATTEMPTS.c.attempt == key.attempt,
                    )
                )
            ).one_or_none()
            if (
                row is None
                or row[0] in TERMINAL
                or row[1] != AttemptStatus.RUNNING
                or row[2] != claimed.claims
            ):
                return False
            await dispatch.hold(
                session, key.execution_id, key.step_id, key.attempt, utcnow() + self.timing.lease
            )
            return True

    async def _finish(
        self, claimed: Claimed, result: Outcome | StepFailure, call: ToolCall
    ) -> list[TaskRef]:
        key = claimed.key
        async with open_unit(self.database, key.tenant_id, self.timing) as unit:
            if claimed.ahead:
                recorded = await self._record_ahead(unit, claimed, lease=False)
                if recorded is None:
                    logger.info("dropping the result of %s: its entry is no longer due", key)
                    return unit.publish
                execution, attempt = recorded
            else:
                found, attempt_found = await _locked(unit, key)
                if (
                    found is None
                    or attempt_found is None
                    or found.status in TERMINAL
                    or not _still_ours(attempt_found, claimed)
                ):
                    logger.info("dropping the result of %s: the attempt is no longer ours", key)
                    return []
                execution, attempt = found, attempt_found
            if claimed.claims is None and not claimed.ahead:
                await self._claim_at_start(unit, claimed, execution, attempt, lease=False)
            announcements.log_lines(unit, execution, unit.now, key.step_id, call.log)
            traces.keep(attempt, call)
            unit.chain = self._chain(execution)
            if isinstance(result, StepFailure):
                await transitions.fail_attempt(unit, execution, attempt, result)
            else:
                await transitions.succeed(unit, execution, attempt, result)
            await self._run_chain(unit, execution, attempt.task_id)
            return unit.publish

    def running(self) -> int:
        """How many attempts this process runs outside a transaction now."""
        return len(self._outside)

    async def hand_back(self) -> list[TaskRef]:
        """This process stops: stop the attempts it runs and give each back at once, for
        another worker to take over now rather than when its lease runs out; the tasks to
        publish for them.

        A claimed attempt's lease is ended (it is taken over as any lost one, counted
        against `max_lease_takeovers`); one not claimed yet has its dispatch row, which
        stands for it, and is simply sent again. Each attempt ran at least once already,
        as every delivery may: its effects carry its idempotency key.
        """
        running, self._outside = list(self._outside.values()), {}
        for _, work in running:
            work.cancel()
        await asyncio.gather(*(work for _, work in running), return_exceptions=True)
        refs: list[TaskRef] = []
        for claimed, _ in running:
            key = claimed.key
            if claimed.claims is not None:
                async with self.database.transaction(key.tenant_id) as session:
                    row = (
                        await session.execute(
                            select(ATTEMPTS.c.status, ATTEMPTS.c.claims).where(
                                ATTEMPTS.c.execution_id == key.execution_id,
                                ATTEMPTS.c.step_id == key.step_id,
                                ATTEMPTS.c.attempt == key.attempt,
                            )
                        )
                    ).one_or_none()
                    if row is None or row[0] != AttemptStatus.RUNNING or row[1] != claimed.claims:
                        continue  # no longer ours: nothing to give back
                    await dispatch.hold(
                        session, key.execution_id, key.step_id, key.attempt, utcnow()
                    )
            refs.append(
                TaskRef(
                    key.tenant_id,
                    key.execution_id,
                    key.step_id,
                    key.attempt,
                    0.0,
                    0,
                    awaits_io(claimed.step),
                )
            )
        if refs:
            logger.info("handed back %d running step(s) for other workers to take", len(refs))
        return refs

    async def sweep(self, limit: int = 500) -> list[TaskRef]:
        """Attempts whose time passed unclaimed, or whose lease ran out: publish them again."""
        async with self.database.transaction(None) as session:
            return await dispatch.take_overdue(
                session, utcnow(), grace=self.timing.grace, lease=self.timing.lease, limit=limit
            )

    async def purge(self, batch: int = 500) -> int:
        """Delete finished executions (and their events) and notifications older than each
        tenant's retention.

        On PostgreSQL the event log's weeks past the longest retention are dropped first
        (`retention.rotate`), so these deletes never touch a partition about to go.
        """
        async with self.database.transaction(None) as session:
            tenant_ids = await tenant_rows.all_ids(session)
        if self.database.is_postgresql:
            rotation = await retention.rotate(self.database, tenant_ids)
            if rotation.dropped:
                logger.info(
                    "dropped event partitions past %d days of retention: %s",
                    rotation.keep_days,
                    ", ".join(rotation.dropped),
                )
            if rotation.added:
                logger.info("added event partitions: %s", ", ".join(rotation.added))
        purged = 0
        for tenant_id in tenant_ids:
            async with planned_transaction(self.database, tenant_id) as work:
                session, plan = work.session, work.plan
                cutoff = utcnow() - timedelta(days=plan.limits.history_retention_days)
                ids = (
                    await session.scalars(
                        select(EXECUTIONS.c.id)
                        .where(
                            EXECUTIONS.c.status.in_(TERMINAL), EXECUTIONS.c.completed_at < cutoff
                        )
                        .limit(batch)
                    )
                ).all()
                if ids:
                    await session.execute(delete(EVENTS).where(EVENTS.c.execution_id.in_(ids)))
                    await session.execute(delete(EXECUTIONS).where(EXECUTIONS.c.id.in_(ids)))
                    purged += len(ids)
                # Notifications (and their events, which name no execution) age the same way.
                await session.execute(delete(Notification).where(Notification.created_at < cutoff))
                await session.execute(
                    delete(EVENTS).where(
                        EVENTS.c.type == NOTIFICATION, EVENTS.c.created_at < cutoff
                    )
                )
        return purged


_DEFERRED_READ: Final = prebuilt(
    select(
        DISPATCH.c.fire_at,
        EXECUTIONS.c.status,
        EXECUTIONS.c.deadline_at,
        EXECUTIONS.c.test,
        EXECUTIONS.c.trace_parent,
        EXECUTIONS.c.definition,
        EXECUTIONS.c.input,
        EXECUTIONS.c.outputs,
    )
    .join(
        ATTEMPTS,
        (ATTEMPTS.c.execution_id == DISPATCH.c.execution_id)
        & (ATTEMPTS.c.step_id == DISPATCH.c.step_id)
        & (ATTEMPTS.c.attempt == DISPATCH.c.attempt),
    )
    .join(EXECUTIONS, EXECUTIONS.c.id == DISPATCH.c.execution_id)
    .where(
        DISPATCH.c.tenant_id == bindparam("tenant"),
        ATTEMPTS.c.tenant_id == bindparam("tenant"),
        EXECUTIONS.c.tenant_id == bindparam("tenant"),
        DISPATCH.c.execution_id == bindparam("execution_id"),
        DISPATCH.c.step_id == bindparam("step_id"),
        DISPATCH.c.attempt == bindparam("attempt"),
        # Published once: this delivery is the only one.
        DISPATCH.c.state == DispatchState.DUE,
        DISPATCH.c.publishes == 1,
        ATTEMPTS.c.status == AttemptStatus.SCHEDULED,
        ATTEMPTS.c.due_at <= bindparam("due_by"),
    )
)
"""`Engine._deferred`'s one read: the attempt, its dispatch row and what running it needs."""


def _call(key: AttemptKey, timeout: float, *, traced: bool = False) -> ToolCall:
    """A step's call; `traced` (a test run's step): it records what it sees in `trace`."""
    return ToolCall(
        key.tenant_id,
        key.execution_id,
        key.step_id,
        key.attempt,
        {},
        timeout,
        trace={} if traced else None,
    )


def _still_ours(attempt: AttemptRow, claimed: Claimed) -> bool:
    """Whether `claimed` may record the attempt: unclaimed and still due, or claimed by it."""
    if claimed.claims is None:
        return attempt.status == AttemptStatus.SCHEDULED
    return attempt.status == AttemptStatus.RUNNING and attempt.claims == claimed.claims


async def _locked(unit: Unit, key: AttemptKey) -> tuple[ExecutionRow | None, AttemptRow | None]:
    """The execution, locked for this transaction, and the attempt, both written with the
    unit when they change.

    Two statements, in this order: on PostgreSQL a statement that waited for the lock
    sees the locked row as it is now, but the other rows it joins as they were when it
    began; the attempt is read by a statement that starts once the lock is held.
    """
    execution = await execution_rows.get(unit.session, key.execution_id, for_update=True)
    if execution is None:
        return None, None
    attempt = await attempt_rows.get(unit.session, key.execution_id, key.step_id, key.attempt)
    return unit.track(execution), None if attempt is None else unit.track_attempt(attempt)
