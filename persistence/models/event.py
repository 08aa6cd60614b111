"""The append-only event log that live streams and projections read from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from foundation.orm import Base, TenantOwned, utcnow

EventId = BigInteger().with_variant(Integer(), "sqlite")


class Event(TenantOwned, Base):
    """One thing that happened, in the seed's payload format.

    `id` increases globally so a reader can resume after the last id it saw; the
    topic keys (`workflow_id`, `execution_id`) let it filter without parsing payloads.

    On PostgreSQL the table is partitioned by week of `created_at` (migration 0008), so
    retention drops old weeks whole; its primary key there is (id, created_at), as the
    partition key must be in it. Rows are still identified by `id` alone, drawn from one
    sequence, and `created_at` is set on insert: it decides the partition.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_tenant_workflow", "tenant_id", "workflow_id", "id"),
        Index("ix_events_tenant_execution", "tenant_id", "execution_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(64))
    execution_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
