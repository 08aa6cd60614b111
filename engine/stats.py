"""Where a workflow's time goes: executions and step attempts over a window, in SQL.

Every figure is computed by the database (counts, means, nearest-rank percentiles through
`ROW_NUMBER`), so an answer costs a few statements whatever the number of executions, and
the statements name tenant-owned tables only, so the tenancy wall confines them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Float, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.attempts import ATTEMPTS
from engine.executions import EXECUTIONS
from persistence.models import AttemptStatus, ExecutionStatus

PERCENTILES: Final = (50, 95, 99)
RUNNING: Final = (ExecutionStatus.QUEUED, ExecutionStatus.PENDING, ExecutionStatus.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class Durations:
    count: int = 0
    mean_ms: int = 0
    p50_ms: int = 0
    p95_ms: int = 0
    p99_ms: int = 0
    max_ms: int = 0


@dataclass(frozen=True, slots=True)
class StepStats:
    step_id: str
    runs: int
    failures: int
    retries: int
    duration: Durations

    @property
    def failure_rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0


@dataclass(frozen=True, slots=True)
class WorkflowStats:
    workflow_id: str
    start: datetime
    end: datetime
    by_status: dict[str, int]
    duration: Durations
    steps: list[StepStats] = field(default_factory=list)

    @property
    def executions(self) -> int:
        return sum(self.by_status.values())

    def count(self, *statuses: ExecutionStatus) -> int:
        return sum(self.by_status.get(status, 0) for status in statuses)

    @property
    def failure_rate(self) -> float:
        finished = self.count(
            ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED
        )
        return self.count(ExecutionStatus.FAILED) / finished if finished else 0.0

    @property
    def bottleneck(self) -> str:
        slowest = max(self.steps, key=lambda s: s.duration.mean_ms, default=None)
        return slowest.step_id if slowest is not None else ""


async def workflow_stats(
    session: AsyncSession,
    workflow_id: str,
    start: datetime,
    end: datetime,
    *,
    include_tests: bool,
    per_step: bool,
    order: Sequence[str] = (),
) -> WorkflowStats:
    """The workflow's executions created in [start, end), and (`per_step`) its steps'
    attempts, steps listed in `order` (the definition's) first."""
    postgres = session.get_bind().dialect.name == "postgresql"
    c = EXECUTIONS.c
    window = [c.workflow_id == workflow_id, c.created_at >= start, c.created_at < end]
    if not include_tests:
        window.append(c.test.is_(False))
    counted = await session.execute(
        select(c.status, func.count()).where(*window).group_by(c.status)
    )
    by_status = {str(status): int(count) for status, count in counted.all()}
    finished = and_(*window, c.status.in_(TERMINAL), c.started_at.is_not(None))
    elapsed = _milliseconds(c.started_at, c.completed_at, postgres)
    durations = await _durations(session, elapsed, finished, literal(""))
    steps: list[StepStats] = []
    if per_step:
        a = ATTEMPTS.c
        ended = and_(
            *window,
            a.execution_id == c.id,
            a.status.in_((AttemptStatus.COMPLETED, AttemptStatus.FAILED)),
            a.started_at.is_not(None),
            a.finished_at.is_not(None),
        )
        step = _step_of(a.step_id, postgres)
        timed = await _durations(
            session, _milliseconds(a.started_at, a.finished_at, postgres), ended, step
        )
        counts = await session.execute(
            select(
                step.label("step"),
                func.count(),
                func.sum(case((a.status == AttemptStatus.FAILED, 1), else_=0)),
                func.sum(case((a.attempt > 1, 1), else_=0)),
            )
            .select_from(ATTEMPTS.join(EXECUTIONS, a.execution_id == c.id))
            .where(ended)
            .group_by(step)
        )
        rank = {step_id: index for index, step_id in enumerate(order)}
        for step_id, runs, failures, retries in counts.all():
            steps.append(
                StepStats(
                    str(step_id),
                    int(runs),
                    int(failures or 0),
                    int(retries or 0),
                    timed.get(str(step_id), Durations()),
                )
            )
        steps.sort(key=lambda s: (rank.get(s.step_id, len(rank)), s.step_id))
    return WorkflowStats(workflow_id, start, end, by_status, durations.get("", Durations()), steps)


TERMINAL: Final = (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)


async def _durations(
    session: AsyncSession, elapsed: Any, where: Any, key: Any
) -> dict[str, Durations]:
    """Count, mean, nearest-rank percentiles and maximum of `elapsed` per `key`."""
    ranked = (
        select(
            key.label("key"),
            elapsed.label("ms"),
            func.row_number().over(partition_by=key, order_by=elapsed).label("rn"),
            func.count().over(partition_by=key).label("n"),
        )
        .where(where)
        .subquery()
    )
    picks = [
        func.min(case((ranked.c.rn * 100 >= ranked.c.n * p, ranked.c.ms), else_=None))
        for p in PERCENTILES
    ]
    rows = await session.execute(
        select(
            ranked.c.key,
            func.count(),
            func.avg(ranked.c.ms),
            *picks,
            func.max(ranked.c.ms),
        ).group_by(ranked.c.key)
    )
    found: dict[str, Durations] = {}
    for key_value, count, mean, p50, p95, p99, longest in rows.all():
        found[str(key_value)] = Durations(
            int(count), _ms(mean), _ms(p50), _ms(p95), _ms(p99), _ms(longest)
        )
    return found


def _ms(value: Any) -> int:
    return 0 if value is None else max(round(float(value)), 0)


def _milliseconds(start: Any, end: Any, postgres: bool) -> Any:
    if postgres:
        return func.extract("epoch", end - start) * 1000
    return cast((func.julianday(end) - func.julianday(start)) * 86_400_000.0, Float)


def _step_of(instance: Any, postgres: bool) -> Any:
    """The step id of an attempt's instance id (`check@each:3` -> `check`)."""
    if postgres:
        return func.split_part(instance, "@", 1)
    at = func.instr(instance, "@")
    return case((at > 0, func.substr(instance, 1, at - 1)), else_=instance)
