"""SQL for finding and listing executions; every statement is confined to the session's tenant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Event, Execution, ExecutionStatus


async def get(
    session: AsyncSession, execution_id: str, *, for_update: bool = False
) -> Execution | None:
    statement = select(Execution).where(Execution.id == execution_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def get_with_last_event(
    session: AsyncSession, execution_id: str
) -> tuple[Execution, int] | None:
    """The execution and the id of its last event (0: none), read in one statement.

    One statement sees one snapshot, and an execution's events are appended in the
    transactions that change it, which hold its row locked: so every event after that id
    is a change the row does not show yet, and every event up to it is one it does.
    """
    last = (
        select(func.coalesce(func.max(Event.id), 0))
        .where(Event.execution_id == Execution.id)
        .correlate(Execution)
        .scalar_subquery()
    )
    found = (
        await session.execute(select(Execution, last).where(Execution.id == execution_id))
    ).one_or_none()
    return None if found is None else (found[0], int(found[1]))


async def get_by_request(session: AsyncSession, request_id: str) -> Execution | None:
    statement = select(Execution).where(Execution.request_id == request_id)
    return (await session.scalars(statement)).one_or_none()


@dataclass(frozen=True, slots=True)
class Filter:
    """What ListExecutions narrows by; empty fields do not narrow."""

    workflow_id: str = ""
    statuses: tuple[ExecutionStatus, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    created_by: str = ""

    def fingerprint(self) -> str:
        """Identifies the listing, so a page token is refused under another filter."""
        return "|".join(
            [
                self.workflow_id,
                ",".join(sorted(self.statuses)),
                self.created_after.isoformat() if self.created_after else "",
                self.created_before.isoformat() if self.created_before else "",
                self.created_by,
            ]
        )


async def list_page(
    session: AsyncSession, where: Filter, *, after: tuple[datetime, str] | None, limit: int
) -> Sequence[Execution]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    statement = select(Execution).order_by(Execution.created_at.desc(), Execution.id.desc())
    if where.workflow_id:
        statement = statement.where(Execution.workflow_id == where.workflow_id)
    if where.statuses:
        statement = statement.where(Execution.status.in_(where.statuses))
    if where.created_after is not None:
        statement = statement.where(Execution.created_at >= where.created_after)
    if where.created_before is not None:
        statement = statement.where(Execution.created_at < where.created_before)
    if where.created_by:
        statement = statement.where(Execution.created_by == where.created_by)
    if after is not None:
        created_at, execution_id = after
        statement = statement.where(
            or_(
                Execution.created_at < created_at,
                and_(Execution.created_at == created_at, Execution.id < execution_id),
            )
        )
    return (await session.scalars(statement.limit(limit))).all()
