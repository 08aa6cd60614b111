"""SQL for workflows, their versions and the tenant's own templates.

Every statement is confined to the session's tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Workflow, WorkflowTemplate, WorkflowVersion


def _live() -> Select[Workflow]:
    return select(Workflow).where(Workflow.deleted_at.is_(None))


async def get(
    session: AsyncSession, workflow_id: str, *, for_update: bool = False
) -> Workflow | None:
    """A workflow that is not deleted; `for_update` locks it for the transaction."""
    statement = _live().where(Workflow.id == workflow_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def get_by_request(session: AsyncSession, request_id: str) -> Workflow | None:
    """The workflow a create with this idempotency key made, even if deleted since."""
    statement = select(Workflow).where(Workflow.request_id == request_id)
    return (await session.scalars(statement)).one_or_none()


async def list_page(
    session: AsyncSession,
    *,
    status: str | None,
    name_prefix: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Workflow]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    statement = _live().order_by(Workflow.created_at.desc(), Workflow.id.desc()).limit(limit)
    if status is not None:
        statement = statement.where(Workflow.status == status)
    if name_prefix:
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(Workflow.name.like(f"{escaped}%", escape="\\"))
    if after is not None:
        created_at, workflow_id = after
        statement = statement.where(
            or_(
                Workflow.created_at < created_at,
                and_(Workflow.created_at == created_at, Workflow.id < workflow_id),
            )
        )
    return (await session.scalars(statement)).all()


async def get_version(
    session: AsyncSession, workflow_id: str, version: int
) -> WorkflowVersion | None:
    statement = select(WorkflowVersion).where(
        WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == version
    )
    return (await session.scalars(statement)).one_or_none()


async def list_versions(
    session: AsyncSession, workflow_id: str, *, before: int | None, limit: int
) -> Sequence[WorkflowVersion]:
    """Newest first; `before` is the previous page's last version number."""
    statement = (
        select(WorkflowVersion)
        .where(WorkflowVersion.workflow_id == workflow_id)
        .order_by(WorkflowVersion.version.desc())
        .limit(limit)
    )
    if before is not None:
        statement = statement.where(WorkflowVersion.version < before)
    return (await session.scalars(statement)).all()


async def get_template(session: AsyncSession, template_id: str) -> WorkflowTemplate | None:
    statement = select(WorkflowTemplate).where(WorkflowTemplate.id == template_id)
    return (await session.scalars(statement)).one_or_none()


async def list_templates(
    session: AsyncSession, *, after: str | None, limit: int
) -> Sequence[WorkflowTemplate]:
    """By id; `after` is the id of the previous page's last template."""
    statement = select(WorkflowTemplate).order_by(WorkflowTemplate.id).limit(limit)
    if after is not None:
        statement = statement.where(WorkflowTemplate.id > after)
    return (await session.scalars(statement)).all()


def add(session: AsyncSession, row: Workflow | WorkflowVersion | WorkflowTemplate) -> None:
    session.add(row)
