"""The engine's unit of work: one tenant's transaction, its plan, the clock, the rows it
changes (written once each, in Core statements, by `flush` before it commits), and the
tasks to publish once it has committed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from engine import attempts as attempt_rows
from engine import dispatch, events
from engine import executions as execution_rows
from engine.dispatch import TaskRef
from engine.rows import AttemptRow, ExecutionRow
from engine.tally import Tally
from foundation.settings import Settings
from tenancy import TenantId
from tenancy.database import TenantDatabase
from tiers import TenantPlan, planned_transaction
from tiers.ledger import CounterLedger


@dataclass(frozen=True, slots=True)
class Timing:
    """The engine's clocks, from the settings."""

    lease: timedelta
    grace: timedelta
    max_countdown: timedelta
    default_step_timeout: timedelta
    max_takeovers: int


@dataclass(slots=True)
class Chain:
    """Inline steps that fall due in a transaction run in it, not through the broker.

    A worker that records an inline step (or any step whose next one is inline) goes on
    with the next one in the same transaction, up to `steps_left` more and until
    `ends_at` (monotonic seconds), so a chain of pure steps costs one commit and no
    queue round trip; past the budget the next step is dispatched as usual, and a
    long or looping chain cannot hold its execution's lock for long.
    """

    execution_id: str
    runs_inline: Callable[[Mapping[str, Any]], bool]
    steps_left: int
    ends_at: float
    due: list[Any] = field(default_factory=list)
    """The attempts (`AttemptRow`) taken on and not run yet, oldest first."""

    @classmethod
    def budget(
        cls,
        execution_id: str,
        runs_inline: Callable[[Mapping[str, Any]], bool],
        steps: int,
        seconds: float,
    ) -> Chain:
        return cls(execution_id, runs_inline, steps, time.monotonic() + seconds)

    def takes(self, execution_id: str, step: Mapping[str, Any]) -> bool:
        """Whether `step` of `execution_id` runs here next; counted against the budget if so.

        Only the chain's own execution: one that a finish admits from the queue is
        dispatched, so its steps never run under another execution's lock.
        """
        if (
            execution_id != self.execution_id
            or self.steps_left <= 0
            or time.monotonic() >= self.ends_at
            or not self.runs_inline(step)
        ):
            return False
        self.steps_left -= 1
        return True


@dataclass(slots=True)
class Unit:
    """One transaction's working set: where, when, and what to publish after commit.

    `numbered` holds, per execution, each step's highest attempt number: read once in
    the transaction, then kept up to date as attempts are added, so a chain does not
    ask the database at every step and a step met twice in one chain gets a new number.
    `undispatched` holds the attempts that have no dispatch row (they ran here).
    """

    session: AsyncSession
    plan: TenantPlan
    now: datetime
    timing: Timing
    publish: list[TaskRef] = field(default_factory=list)
    chain: Chain | None = None
    numbered: dict[str, dict[str, int]] = field(default_factory=dict)
    scoped_numbers: dict[str, dict[str, int]] = field(default_factory=dict)
    slots_in_use: int | None = None
    """The tenant's slots in use as first read in this transaction: a dispatch rank's."""
    """Per execution: the attempt numbers known of instances in loops (`transitions`)."""
    ledger: CounterLedger | None = None
    """The batch's quota counters, when this unit is one call of a group commit."""
    done: dict[str, tuple[Any, int]] = field(default_factory=dict)
    """Per execution: the `steps` record this transaction last wrote, and its done count."""
    undispatched: set[tuple[str, str, int]] = field(default_factory=set)
    executions: dict[str, ExecutionRow] = field(default_factory=dict)
    """The executions this transaction read or made, by id: written by `flush`."""
    attempts: list[AttemptRow] = field(default_factory=list)
    dispatch_rows: list[dispatch.NewDispatch] = field(default_factory=list)
    event_rows: list[events.NewEvent] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    """What the metrics count of this transaction, once it has committed."""

    def track(self, execution: ExecutionRow) -> ExecutionRow:
        """`execution` is written at the next `flush` with whatever changed on it."""
        return self.executions.setdefault(execution.id, execution)

    def track_attempt(self, attempt: AttemptRow) -> AttemptRow:
        self.attempts.append(attempt)
        return attempt


async def flush(unit: Unit) -> None:
    """Write what the unit changed: each row once, new executions and attempts before the
    rows that refer to them, then its dispatch rows and events."""
    session = unit.session
    await execution_rows.write(session, list(unit.executions.values()))
    await attempt_rows.write(session, unit.attempts)
    rows, unit.dispatch_rows = unit.dispatch_rows, []
    await dispatch.insert(session, rows)
    written, unit.event_rows = unit.event_rows, []
    await events.insert(session, written)


def utcnow() -> datetime:
    return datetime.now(UTC)


def timing_of(settings: Settings) -> Timing:
    return Timing(
        lease=timedelta(seconds=settings.lease_seconds),
        grace=timedelta(seconds=settings.dispatch_grace_seconds),
        max_countdown=timedelta(seconds=max(settings.dispatch_grace_seconds * 4, 60.0)),
        default_step_timeout=timedelta(seconds=settings.default_step_timeout_seconds),
        max_takeovers=settings.max_lease_takeovers,
    )


@asynccontextmanager
async def open_unit(
    database: TenantDatabase, tenant: TenantId, timing: Timing
) -> AsyncIterator[Unit]:
    """The tenant's transaction with its plan; `unit.publish` is to be sent after it commits."""
    async with planned_transaction(database, tenant) as work:
        unit = Unit(work.session, work.plan, utcnow(), timing)
        yield unit
        await flush(unit)
    unit.tally.emit(unit.plan)
