"""Workflow definitions and their immutable versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from foundation.orm import Base, TenantOwned, utcnow


class Workflow(TenantOwned, Base):
    """A tenant's workflow: the current definition and its life-cycle state.

    `definition` holds name, description, input_schema and steps in the stored form;
    `name` repeats the name so lists can filter on it. A soft-deleted workflow keeps
    its row (executions still name it) with `deleted_at` set.
    """

    __tablename__ = "workflows"
    __table_args__ = (
        UniqueConstraint("tenant_id", "request_id", name="uq_workflows_tenant_request"),
        Index("ix_workflows_tenant_listing", "tenant_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(BigInteger)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_by: Mapped[str] = mapped_column(String(200))
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    published_version: Mapped[int | None] = mapped_column(BigInteger, default=None)


class WorkflowVersion(TenantOwned, Base):
    """One immutable snapshot of a definition; only its publication may be added later."""

    __tablename__ = "workflow_versions"

    workflow_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    release_notes: Mapped[str | None] = mapped_column(Text, default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    published_by: Mapped[str | None] = mapped_column(String(200), default=None)
