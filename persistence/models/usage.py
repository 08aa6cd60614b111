"""Quota counters, one row per tenant, metric and window."""

from __future__ import annotations

from sqlalchemy import BigInteger, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from foundation.orm import Base, TenantOwned


class UsageCounter(TenantOwned, Base):
    """How much of one quota a tenant uses; `window` is '' for gauges, the UTC day for rates.

    Counters are changed by one conditional UPDATE, so concurrent consumers can never
    push `used` past the limit.
    """

    __tablename__ = "usage_counters"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "metric", "window"),)

    metric: Mapped[str] = mapped_column(String(40))
    window: Mapped[str] = mapped_column(String(10), default="")
    used: Mapped[int] = mapped_column(BigInteger, default=0)
