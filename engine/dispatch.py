"""The dispatch queue: which step attempts are due or running, and publishing their tasks.

A row is written in the transaction that makes an attempt due, and its task is
published only after that transaction commits. If the publish never happens (the
process died, the broker was down, the message was lost), the row's `fire_at`
passes and the sweeper publishes it again; a running attempt whose worker stops
renewing its lease is found the same way. Publishing twice is harmless: a task
only acts on an attempt that is still due, or running with an expired lease.

A lease that ran out while the database itself was down proves nothing: its holder could
not renew it. On PostgreSQL such leases stand for one more lease after the server
started (`restarted_since`), for live holders to record what they ran meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.rows import attempt_key, insert_all, instances_named, keyed_by_attempt
from persistence.models import Dispatch, DispatchState
from tenancy import TenantId, decode_tenant
from tenancy.scoping import prebuilt

DISPATCH: Final[Table] = Dispatch.__table__  # type: ignore[assignment]

MAX_RANK = 9


@dataclass(frozen=True, slots=True)
class TaskRef:
    """What a step task message carries: ids to re-read, when to run, how urgent.

    `rank` 0 is the most urgent; brokers order messages by it (see `workers.app`).
    `awaits_io`: a step of an I/O-bound tool, sent to the workers' I/O lane.
    """

    tenant_id: TenantId
    execution_id: str
    step_id: str
    attempt: int
    countdown: float = 0.0
    rank: int = 0
    awaits_io: bool = False


class Publisher(Protocol):
    """Sends step tasks to workers; never called inside a database transaction."""

    def publish(self, refs: Sequence[TaskRef]) -> None: ...


def rank_for(slots_in_use: int) -> int:
    """A tenant's urgency from how many executions it runs: few running, most urgent.

    Ranks grow with the logarithm of the load, so a tenant running one execution
    goes ahead of one running fifty, and no backlog can push another tenant's
    steps behind all of its own.
    """
    return min(MAX_RANK, max(0, math.floor(math.log2(max(slots_in_use, 1)))))


NewDispatch = dict[str, Any]
"""A `dispatch_queue` row's values, to insert with the transaction's other writes (`insert`)."""


def schedule(
    pending: list[NewDispatch],
    *,
    tenant_id: TenantId,
    execution_id: str,
    step_id: str,
    attempt: int,
    due_at: datetime,
    now: datetime,
    grace: timedelta,
    max_countdown: timedelta,
    rank: int,
    awaits_io: bool = False,
) -> TaskRef | None:
    """Record an attempt as due (its row added to `pending`); the ref to publish after
    commit, or None (too far ahead)."""
    soon = due_at - now <= max_countdown
    pending.append(
        {
            "execution_id": execution_id,
            "step_id": step_id,
            "attempt": attempt,
            "tenant_id": tenant_id,
            "state": DispatchState.DUE if soon else DispatchState.WAITING,
            "fire_at": due_at + grace if soon else due_at,
            "lease_until": None,
            "published_at": now if soon else None,
            "publishes": 1 if soon else 0,
            "priority": rank,
            "awaits_io": awaits_io,
        }
    )
    if not soon:
        return None
    countdown = max((due_at - now).total_seconds(), 0.0)
    return TaskRef(tenant_id, execution_id, step_id, attempt, countdown, rank, awaits_io)


def running(
    pending: list[NewDispatch],
    *,
    tenant_id: TenantId,
    execution_id: str,
    step_id: str,
    attempt: int,
    lease_until: datetime,
    awaits_io: bool,
) -> None:
    """Record an attempt a worker took without a message (it ran ahead of its record) as
    running under its lease, so the sweeper finds it if the worker stops."""
    pending.append(
        {
            "execution_id": execution_id,
            "step_id": step_id,
            "attempt": attempt,
            "tenant_id": tenant_id,
            "state": DispatchState.RUNNING,
            "fire_at": lease_until,
            "lease_until": lease_until,
            "published_at": None,
            "publishes": 0,
            "priority": 0,
            "awaits_io": awaits_io,
        }
    )


_KEYED: Final = keyed_by_attempt(DISPATCH)
_HOLD: Final = prebuilt(
    update(DISPATCH)
    .where(*_KEYED)
    .values(
        state=DispatchState.RUNNING,
        lease_until=bindparam("held_until"),
        fire_at=bindparam("held_until"),
        publishes=0,
    )
)
_DONE: Final = prebuilt(delete(DISPATCH).where(*_KEYED))
_DROP: Final = prebuilt(
    delete(DISPATCH).where(DISPATCH.c.execution_id == bindparam("key_execution"))
)


async def insert(session: AsyncSession, rows: Sequence[NewDispatch]) -> None:
    """Add the rows `schedule` and `running` made, in one statement."""
    if rows:
        await insert_all(session, DISPATCH, rows)


async def hold(
    session: AsyncSession, execution_id: str, step_id: str, attempt: int, lease_until: datetime
) -> None:
    """Mark an attempt running until `lease_until` (claim and heartbeat)."""
    await session.execute(
        _HOLD, {**attempt_key(execution_id, step_id, attempt), "held_until": lease_until}
    )


async def done(session: AsyncSession, execution_id: str, step_id: str, attempt: int) -> None:
    """The attempt finished: nothing more to publish for it."""
    await session.execute(_DONE, attempt_key(execution_id, step_id, attempt))


async def drop_execution(session: AsyncSession, execution_id: str) -> None:
    """The execution ended: none of its attempts is due any more."""
    await session.execute(_DROP, {"key_execution": execution_id})


async def drop_instances(
    session: AsyncSession, execution_id: str, names: list[str], markers: list[str]
) -> None:
    """The instances `names` (and those in the iterations `markers` name) will not run."""
    await session.execute(
        delete(DISPATCH).where(
            DISPATCH.c.execution_id == execution_id, instances_named(DISPATCH, names, markers)
        )
    )


def resend_delay(grace: timedelta, publishes: int) -> timedelta:
    """How long to wait for a published task before publishing it again.

    Doubles with each publish (up to 64 graces), so a backlog longer than the grace
    period is not multiplied by the sweeper while the first messages still wait in it.
    """
    return grace * (1 << min(max(publishes - 1, 0), 6))


async def restarted_since(session: AsyncSession, moment: datetime) -> bool:
    """Whether the database server started after `moment`: always False on SQLite, which
    runs inside the process that would hold the leases."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    started = await session.scalar(select(func.pg_postmaster_start_time()))
    return started is not None and started > moment


async def take_overdue(
    session: AsyncSession, now: datetime, *, grace: timedelta, lease: timedelta, limit: int
) -> list[TaskRef]:
    """Rows whose time passed: the refs to publish now, each row's next check set later.

    A due row was published but not claimed in time; a running row's lease ran out
    (`lease_until` stays as it was: the task that takes the attempt over checks it),
    unless the database started less than a `lease` ago (see the module). Waiting rows
    that fall due within `grace` are published with a countdown. Rows locked by a
    running transaction are skipped.
    """
    leases_stand = await restarted_since(session, now - lease)
    c = DISPATCH.c
    statement = (
        select(DISPATCH)
        .where(c.fire_at <= now + grace)
        .order_by(c.fire_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    refs: list[TaskRef] = []
    changes: list[dict[str, Any]] = []
    for row in (await session.execute(statement)).all():
        countdown, state = 0.0, row.state
        if row.state == DispatchState.WAITING:
            countdown = max((row.fire_at - now).total_seconds(), 0.0)
            state = DispatchState.DUE
        elif row.fire_at > now or (leases_stand and row.state == DispatchState.RUNNING):
            continue
        publishes = row.publishes + 1
        changes.append(
            {
                **attempt_key(row.execution_id, row.step_id, row.attempt),
                "state": state,
                "publishes": publishes,
                "published_at": now,
                "fire_at": now + timedelta(seconds=countdown) + resend_delay(grace, publishes),
            }
        )
        refs.append(
            TaskRef(
                decode_tenant(row.tenant_id),
                row.execution_id,
                row.step_id,
                row.attempt,
                countdown,
                row.priority,
                row.awaits_io,
            )
        )
    if changes:
        await session.execute(_RESENT, changes)
    return refs


_RESENT: Final = prebuilt(
    update(DISPATCH)
    .where(*_KEYED)
    .values(
        state=bindparam("state"),
        publishes=bindparam("publishes"),
        published_at=bindparam("published_at"),
        fire_at=bindparam("fire_at"),
    )
)
