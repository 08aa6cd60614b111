"""A user's notifications and settings: reads and the few changes a user may make."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.database import upsert_insert
from persistence.models import Notification, NotificationPreference


async def page(
    session: AsyncSession, user: str, *, unread_only: bool, before: int | None, limit: int
) -> Sequence[Notification]:
    """The user's notifications newest first, with ids below `before` when it is set."""
    statement = (
        select(Notification)
        .where(Notification.user_id == user)
        .order_by(Notification.id.desc())
        .limit(limit)
    )
    if unread_only:
        statement = statement.where(Notification.read_at.is_(None))
    if before is not None:
        statement = statement.where(Notification.id < before)
    return (await session.scalars(statement)).all()


async def unread(session: AsyncSession, user: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user, Notification.read_at.is_(None))
    )
    return int(count or 0)


async def mark_read(session: AsyncSession, user: str, ids: Sequence[int] | None) -> int:
    """Mark the user's unread notifications read (those of `ids`, or all); how many."""
    statement = (
        update(Notification)
        .where(Notification.user_id == user, Notification.read_at.is_(None))
        .values(read_at=datetime.now(UTC))
    )
    if ids is not None:
        statement = statement.where(Notification.id.in_(sorted(set(ids))))
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def completed_wanted(session: AsyncSession, user: str) -> bool:
    wanted = await session.scalar(
        select(NotificationPreference.on_completed).where(NotificationPreference.user_id == user)
    )
    return bool(wanted)


async def want_completed(session: AsyncSession, tenant: str, user: str, wanted: bool) -> None:
    insert = upsert_insert(session.get_bind().dialect.name)
    now = datetime.now(UTC)
    statement = insert(NotificationPreference).values(
        tenant_id=tenant, user_id=user, on_completed=wanted, updated_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "user_id"],
            set_={"on_completed": wanted, "updated_at": now},
        )
    )
