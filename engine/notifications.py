"""Notifications made from the event log (seed 001's real-time notifications per user).

Three rules, each an idempotent handler of one kind of event: an execution that failed
tells the user who started it (`execution_failed`); one that completed tells that user if
they asked for it (`execution_completed`, opt-in); a step that took longer than a
threshold, or longer than `factor` times the p95 of its own recent runs, tells that user the
execution is slow (`slow_execution`).

A notification is a row keyed by (tenant, user, kind, source event), inserted with ON
CONFLICT DO NOTHING; only a row that was really inserted appends its `notification`
event, in the same transaction, addressed to its user (`engine.topics`). So handling the
same event twice, after a restart or on two servers, makes one notification and one
event. Notification events make nothing themselves.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Row, Table, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from engine import events
from engine.executions import EXECUTIONS
from engine.feed import FeedEvent
from engine.topics import NOTIFICATION
from foundation.database import upsert_insert
from persistence.models import Notification, NotificationPreference
from tenancy import TenantId

EXECUTION_FAILED: Final = "execution_failed"
EXECUTION_COMPLETED: Final = "execution_completed"
SLOW_EXECUTION: Final = "slow_execution"

MIN_SAMPLES: Final = 20
"""Runs of a step needed before its own p95 says what is slow for it."""
SAMPLES: Final = 100
"""Recent runs of a step kept for its p95."""
STEPS_TRACKED: Final = 10_000
"""Steps (tenant, workflow, step) whose recent runs are kept; the least recent go first."""

NOTIFICATIONS: Final[Table] = Notification.__table__  # type: ignore[assignment]
PREFERENCES: Final[Table] = NotificationPreference.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A notification an event calls for, before its recipient is known."""

    kind: str
    source: FeedEvent
    message: str
    details: dict[str, Any]


class StepDurations:
    """Recent run times of each step, to tell a slow run from its usual pace.

    Fed by the `workflow_step_completed` events the handler reads, in memory and bounded
    (`STEPS_TRACKED` steps of `SAMPLES` runs each); after a restart a step's pace is learnt
    again from its next runs, while the fixed threshold holds from the first one.
    """

    def __init__(self, threshold_ms: int, factor: float) -> None:
        self._threshold_ms = threshold_ms
        self._factor = factor
        self._runs: OrderedDict[tuple[str, str, str], deque[int]] = OrderedDict()

    def slow(self, key: tuple[str, str, str], duration_ms: int) -> dict[str, Any] | None:
        """Why a run of `duration_ms` is slow for this step (None if it is not); then
        remember it."""
        runs = self._runs.pop(key, None) or deque(maxlen=SAMPLES)
        why: dict[str, Any] | None = None
        if duration_ms > self._threshold_ms:
            why = {"threshold_ms": self._threshold_ms}
        elif len(runs) >= MIN_SAMPLES:
            usual = p95(runs)
            if duration_ms > self._factor * usual:
                why = {"p95_ms": usual, "factor": self._factor}
        runs.append(duration_ms)
        self._runs[key] = runs
        while len(self._runs) > STEPS_TRACKED:
            self._runs.popitem(last=False)
        return why


def p95(values: Iterable[int]) -> int:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def candidates(batch: Sequence[FeedEvent], durations: StepDurations) -> list[Candidate]:
    """The notifications the events of `batch` call for, in event order."""
    found: list[Candidate] = []
    for event in batch:
        if event.type == "workflow_execution_completed":
            status = event.payload.get("status")
            if status == "failed":
                found.append(
                    Candidate(EXECUTION_FAILED, event, f"Execution {event.execution_id} failed", {})
                )
            elif status == "completed":
                found.append(
                    Candidate(
                        EXECUTION_COMPLETED, event, f"Execution {event.execution_id} completed", {}
                    )
                )
        elif event.type == "workflow_step_completed":
            slow = _slow_step(event, durations)
            if slow is not None:
                found.append(slow)
    return found


def _slow_step(event: FeedEvent, durations: StepDurations) -> Candidate | None:
    duration = event.payload.get("duration_ms")
    step_id = event.payload.get("step_id")
    if not isinstance(duration, int) or not isinstance(step_id, str):
        return None
    key = (event.tenant_id, event.workflow_id or "", step_id)
    why = durations.slow(key, duration)
    if why is None:
        return None
    name = event.payload.get("step_name") or step_id
    message = f"Execution {event.execution_id} is slow: step {name} took {duration / 1000:.1f}s"
    return Candidate(
        SLOW_EXECUTION, event, message, {"step_id": step_id, "duration_ms": duration, **why}
    )


@dataclass(frozen=True, slots=True)
class Addressed:
    """A candidate with its recipient and the details its notification carries."""

    candidate: Candidate
    user: str
    details: dict[str, Any]


Reader = Callable[[Executable], Awaitable[Sequence[Row[Any]]]]
"""Runs a read-only statement in the tenant's scope; its rows."""


async def address(read: Reader, tenant: TenantId, found: Sequence[Candidate]) -> list[Addressed]:
    """Who each of `found` goes to, by reads only: an empty list needs no transaction.

    Recipients come from the executions' `created_by`, and `execution_completed` goes
    only to users who opted in. The reads name the tenant themselves, since `read` may
    run them outside a session (`engine.shared_reads`).
    """
    execution_ids = sorted({c.source.execution_id for c in found if c.source.execution_id})
    if not execution_ids:
        return []
    rows = await read(
        select(EXECUTIONS.c.id, EXECUTIONS.c.created_by, EXECUTIONS.c.error).where(
            EXECUTIONS.c.tenant_id == tenant, EXECUTIONS.c.id.in_(execution_ids)
        )
    )
    started_by = {row.id: row.created_by for row in rows}
    errors = {row.id: row.error for row in rows}
    opted_in: set[str] = set()
    if any(c.kind == EXECUTION_COMPLETED for c in found) and started_by:
        opted_in = {
            row.user_id
            for row in await read(
                select(PREFERENCES.c.user_id).where(
                    PREFERENCES.c.tenant_id == tenant,
                    PREFERENCES.c.user_id.in_(sorted(set(started_by.values()))),
                    PREFERENCES.c.on_completed.is_(True),
                )
            )
        }
    addressed = []
    for candidate in found:
        event = candidate.source
        user = started_by.get(event.execution_id or "")
        if user is None or (candidate.kind == EXECUTION_COMPLETED and user not in opted_in):
            continue
        details = {**candidate.details, "status": event.payload.get("status")}
        if candidate.kind == EXECUTION_FAILED and errors.get(event.execution_id or ""):
            details["error"] = errors[event.execution_id or ""]
        details = {k: v for k, v in details.items() if v is not None}
        addressed.append(Addressed(candidate, user, details))
    return addressed


async def record(session: AsyncSession, tenant: TenantId, found: Sequence[Addressed]) -> int:
    """Make the tenant's notifications of `found` (see `address`), each once; the number
    newly made."""
    insert = upsert_insert(session.get_bind().dialect.name)
    made = 0
    announced: list[events.NewEvent] = []
    for one in found:
        candidate, user, details = one.candidate, one.user, one.details
        event = candidate.source
        now = datetime.now(UTC)
        inserted = await session.scalar(
            insert(NOTIFICATIONS)
            .values(
                tenant_id=tenant,
                user_id=user,
                kind=candidate.kind,
                event_id=event.id,
                workflow_id=event.workflow_id,
                execution_id=event.execution_id,
                message=candidate.message,
                details=details,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "user_id", "kind", "event_id"])
            .returning(NOTIFICATIONS.c.id)
        )
        if inserted is None:
            continue
        made += 1
        announced.append(
            events.row(
                NOTIFICATION,
                {
                    "notification_id": inserted,
                    "user_id": user,
                    "kind": candidate.kind,
                    "message": candidate.message,
                    "details": {
                        **details,
                        "workflow_id": event.workflow_id,
                        "execution_id": event.execution_id,
                        "source_event_id": event.id,
                    },
                    "timestamp": now.isoformat().replace("+00:00", "Z"),
                },
            )
        )
    await events.insert(session, announced)
    return made
