"""Appending to and reading from the event log, always within the session's tenant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Event


async def append(
    session: AsyncSession,
    event_type: str,
    payload: dict[str, Any],
    *,
    workflow_id: str | None = None,
    execution_id: str | None = None,
) -> Event:
    """Add an event in the caller's transaction, so it commits with the state change."""
    event = record(session, event_type, payload, workflow_id=workflow_id, execution_id=execution_id)
    await session.flush()
    return event


def record(
    session: AsyncSession,
    event_type: str,
    payload: dict[str, Any],
    *,
    workflow_id: str | None = None,
    execution_id: str | None = None,
) -> Event:
    """As `append`, but written with the transaction's next flush (its id comes then)."""
    event = Event(
        type=event_type, payload=payload, workflow_id=workflow_id, execution_id=execution_id
    )
    session.add(event)
    return event


async def read_after(
    session: AsyncSession,
    after_id: int = 0,
    *,
    workflow_ids: Sequence[str] = (),
    execution_ids: Sequence[str] = (),
    limit: int = 500,
) -> Sequence[Event]:
    """Events with id > `after_id`, oldest first, optionally only for the given topics."""
    statement = select(Event).where(Event.id > after_id).order_by(Event.id).limit(limit)
    topics = []
    if workflow_ids:
        topics.append(Event.workflow_id.in_(workflow_ids))
    if execution_ids:
        topics.append(Event.execution_id.in_(execution_ids))
    if topics:
        statement = statement.where(or_(*topics))
    return (await session.scalars(statement)).all()
