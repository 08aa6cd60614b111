"""Notifications for the users of a tenant, what each user asked for, and the projection cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from foundation.orm import Base, TenantOwned, utcnow
from persistence.models.event import EventId


class Notification(TenantOwned, Base):
    """One message for one user, made from one event of the log.

    (tenant, user, kind, event) is unique: the handler that makes notifications may see an
    event twice (a restart, two servers), and the second time makes nothing.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "uq_notifications_source",
            "tenant_id",
            "user_id",
            "kind",
            "event_id",
            unique=True,
        ),
        Index("ix_notifications_tenant_user", "tenant_id", "user_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[int] = mapped_column(BigInteger)
    workflow_id: Mapped[str | None] = mapped_column(String(36), default=None)
    execution_id: Mapped[str | None] = mapped_column(String(36), default=None)
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(default=None)


class NotificationPreference(TenantOwned, Base):
    """What a user of a tenant asked to be told beyond the defaults."""

    __tablename__ = "notification_preferences"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "user_id"),)

    user_id: Mapped[str] = mapped_column(String(200))
    on_completed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Projection(Base):
    """How far a handler that follows the event log across tenants has got.

    Ids and positions only, no tenant data: the one row per handler is read and moved
    forward outside any tenant.
    """

    __tablename__ = "projections"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
