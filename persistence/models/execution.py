"""Executions, their step attempts, and the dispatch queue that drives them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from foundation.orm import Base, TenantOwned, utcnow
from persistence.models.statuses import (
    AttemptStatus,
    DispatchState,
    ExecutionStatus,
    stored_as_value,
)

PATCHED_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")
"""A JSON column changed path by path (`engine.patches`): `jsonb` on PostgreSQL."""


class Execution(TenantOwned, Base):
    """One run of a workflow: the seed's record (`status`, `steps`, `error_detail`, `result`).

    `definition` is a copy of the workflow version it runs, so edits to the workflow
    (which on Free keep no history) never change a running execution. `outputs` holds
    each finished step's output by step id: what later steps' paths read.
    """

    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "request_id", name="uq_executions_tenant_request"),
        Index("ix_executions_tenant_listing", "tenant_id", "created_at", "id"),
        Index("ix_executions_tenant_status", "tenant_id", "status", "created_at"),
        Index("ix_executions_tenant_workflow", "tenant_id", "workflow_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("workflows.id", ondelete="CASCADE")
    )
    """None for a test run of an inline definition (TestExecute)."""
    workflow_version: Mapped[int] = mapped_column(BigInteger)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[ExecutionStatus] = mapped_column(stored_as_value(ExecutionStatus, "status"))
    steps: Mapped[dict[str, Any]] = mapped_column(PATCHED_DOCUMENT)
    outputs: Mapped[dict[str, Any]] = mapped_column(PATCHED_DOCUMENT, default=dict)
    current_step: Mapped[str | None] = mapped_column(String(63), default=None)
    resume_from: Mapped[str | None] = mapped_column(String(63), default=None)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    holds_slot: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    rerun_of: Mapped[str | None] = mapped_column(String(36), default=None)
    rerun_from_step: Mapped[str | None] = mapped_column(String(63), default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(200), default=None)
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    """A test run (TestExecute): counts against concurrency, not the daily quota."""
    trace_parent: Mapped[str | None] = mapped_column(String(55), default=None)
    """The W3C traceparent of the call that started it: its steps' spans join that trace."""


class StepAttempt(TenantOwned, Base):
    """One attempt of one step: unique on (execution, step, attempt), applied once.

    `claims` counts the workers that took the attempt; a worker records its result
    only if the count is still the one it claimed with, so a worker that lost its
    lease cannot overwrite the one that took over.
    """

    __tablename__ = "step_attempts"

    execution_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    step_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[AttemptStatus] = mapped_column(stored_as_value(AttemptStatus, "status"))
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    claims: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    output: Mapped[Any] = mapped_column(JSON, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    trace: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """What a test run's attempt saw: resolved input, conditions and their values, logs."""


class Dispatch(Base):
    """A step attempt that is due or running: the outbox and the lease in one row.

    It holds ids and times only, no tenant data, and is the one table read across
    tenants: the sweeper finds rows whose `fire_at` passed (a due attempt never
    started, a running one whose worker let `lease_until` pass) and publishes their
    task again, waiting longer after each of its `publishes`.
    """

    __tablename__ = "dispatch_queue"
    __table_args__ = (Index("ix_dispatch_queue_fire_at", "fire_at"),)

    execution_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    step_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    state: Mapped[DispatchState] = mapped_column(stored_as_value(DispatchState, "state"))
    fire_at: Mapped[datetime] = mapped_column()
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    publishes: Mapped[int] = mapped_column(SmallInteger, default=0)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    awaits_io: Mapped[bool] = mapped_column(Boolean, default=False)
    """A step of an I/O-bound tool: its task goes to the workers' I/O lane."""
