"""The `step_attempts` table's statements, in SQLAlchemy Core: every attempt the engine
reads, adds or changes, as `AttemptRow`s. Every statement is confined to the session's
tenant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.rows import AttemptRow, attempt_key, insert_all, instances_named, keyed_by_attempt
from persistence.models import AttemptStatus, StepAttempt
from tenancy.scoping import prebuilt

ATTEMPTS: Final[Table] = StepAttempt.__table__  # type: ignore[assignment]

UNFINISHED: Final = frozenset({AttemptStatus.SCHEDULED, AttemptStatus.RUNNING})
"""An attempt in one of these still has a worker to come or a worker on it."""


_KEYED: Final = keyed_by_attempt(ATTEMPTS)
_ONE: Final = prebuilt(select(ATTEMPTS).where(*_KEYED))
_NUMBERS: Final = prebuilt(
    select(ATTEMPTS.c.step_id, func.max(ATTEMPTS.c.attempt))
    .where(
        ATTEMPTS.c.execution_id == bindparam("execution_id"),
        ATTEMPTS.c.step_id.not_like("%@%"),  # instances in loops are read one by one
    )
    .group_by(ATTEMPTS.c.step_id)
)
_HIGHEST: Final = prebuilt(
    select(func.max(ATTEMPTS.c.attempt)).where(
        ATTEMPTS.c.execution_id == bindparam("execution_id"),
        ATTEMPTS.c.step_id == bindparam("step_id"),
    )
)
_CANCEL: Final = prebuilt(
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.execution_id == bindparam("key_execution"),
        ATTEMPTS.c.status.in_(UNFINISHED),
    )
    .values(status=AttemptStatus.CANCELLED, finished_at=bindparam("finished_now"))
)


async def get(
    session: AsyncSession, execution_id: str, step_id: str, attempt: int
) -> AttemptRow | None:
    found = (await session.execute(_ONE, attempt_key(execution_id, step_id, attempt))).first()
    return None if found is None else AttemptRow(found._mapping, stored=True)


async def of_execution(session: AsyncSession, execution_id: str) -> list[AttemptRow]:
    """Every attempt of the execution (a test run's trace reads them all)."""
    rows = await session.execute(
        select(ATTEMPTS)
        .where(ATTEMPTS.c.execution_id == execution_id)
        .order_by(ATTEMPTS.c.step_id, ATTEMPTS.c.attempt)
    )
    return [AttemptRow(row._mapping, stored=True) for row in rows.all()]


async def highest_numbers(session: AsyncSession, execution_id: str) -> dict[str, int]:
    """Each step's highest attempt number in the execution."""
    rows = await session.execute(_NUMBERS, {"execution_id": execution_id})
    return {str(step): int(top) for step, top in rows.all()}


async def highest_for(session: AsyncSession, execution_id: str, instance: str) -> int:
    """One step instance's highest attempt number (0: none)."""
    found = await session.scalar(_HIGHEST, {"execution_id": execution_id, "step_id": instance})
    return int(found or 0)


async def cancel_instances(
    session: AsyncSession, execution_id: str, names: list[str], markers: list[str], now: datetime
) -> None:
    """Cancel the unfinished attempts of the instances `names`, and of every instance in
    the iterations `markers` name (`engine.flow.iterations_marker`)."""
    await session.execute(
        update(ATTEMPTS)
        .where(
            ATTEMPTS.c.execution_id == execution_id,
            ATTEMPTS.c.status.in_(UNFINISHED),
            instances_named(ATTEMPTS, names, markers),
        )
        .values(status=AttemptStatus.CANCELLED, finished_at=now)
    )


async def cancel_unfinished(session: AsyncSession, execution_id: str, now: datetime) -> None:
    """The execution ended: its attempts still due or running never will be."""
    await session.execute(_CANCEL, {"key_execution": execution_id, "finished_now": now})


async def write(session: AsyncSession, rows: Sequence[AttemptRow]) -> None:
    """Insert the new attempts (one statement) and update the changed ones (one each)."""
    new = [row.values() for row in rows if not row.stored]
    if new:
        await insert_all(session, ATTEMPTS, new)
    for row in rows:
        if not row.stored:
            row.written()
            continue
        if not row.changed:
            continue
        names = tuple(sorted(row.changed))
        bound = {f"new_{name}": getattr(row, name) for name in names}
        await session.execute(
            _update(names), bound | attempt_key(row.execution_id, row.step_id, row.attempt)
        )
        row.written()


_updates: dict[tuple[str, ...], Any] = {}


def _update(names: tuple[str, ...]) -> Any:
    """The UPDATE that sets `names` (parameters `new_<name>`) of one attempt, built once per
    set of names (there are few), so it is confined and compiled once."""
    statement = _updates.get(names)
    if statement is None:
        values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names}
        statement = _updates[names] = prebuilt(update(ATTEMPTS).where(*_KEYED).values(values))
    return statement
