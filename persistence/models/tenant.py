"""The tenant registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from foundation.orm import Base, utcnow


class Tenant(Base):
    """A customer; `tier` is its plan and `limit_overrides` its Enterprise adjustments."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20))
    limit_overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    adapters: Mapped[list[str]] = mapped_column(JSON, default=list)
    """The custom adapters (installed `wfe.tools` adapters) its workflows may call."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
