"""A tenant's own workflow templates, saved from its workflows (Enterprise)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from foundation.orm import Base, TenantOwned, utcnow


class WorkflowTemplate(TenantOwned, Base):
    """One custom template: catalog-style metadata and a copy of the definition it starts with.

    Keyed by (tenant, id), so each tenant has its own id namespace and one tenant's ids
    say nothing about another's. The definition is a copy: later edits or the deletion of
    the source workflow leave the template as it was saved.
    """

    __tablename__ = "workflow_templates"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "id"),)

    id: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(40))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_workflow_id: Mapped[str] = mapped_column(String(36))
    source_version: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
