"""Workflow operations: create, change, life cycle and versions, each checked against the plan.

Every function runs inside the caller's transaction and never commits; every change
appends its `workflow_updated` event in that same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from engine import events
from foundation.errors import (
    FieldViolation,
    InvalidInput,
    InvalidWorkflowDefinition,
    WorkflowNotFound,
)
from persistence.models import Workflow, WorkflowVersion
from service import offload
from service.idempotency import check_request_id
from service.workflows import repository
from service.workflows.issues import Issue
from service.workflows.validation import validate_workflow
from tiers import Quota, TenantPlan, Versioning, consume, release, require_feature


class Status(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"
    DELETED = "deleted"


ACTIVATABLE = frozenset({Status.DRAFT, Status.ARCHIVED})
ARCHIVABLE = frozenset({Status.DRAFT, Status.ACTIVE})


def refusal(errors: Sequence[Issue]) -> InvalidWorkflowDefinition:
    """The error Create and Update raise, carrying every violation."""
    return InvalidWorkflowDefinition(
        f"the workflow definition has {len(errors)} error(s): "
        + "; ".join(f"{issue.code}: {issue.message}" for issue in errors[:5]),
        metadata={"error_count": len(errors), "codes": ",".join(sorted({i.code for i in errors}))},
        violations=[
            FieldViolation(
                issue.field or f"steps.{issue.step_id}", f"{issue.code}: {issue.message}"
            )
            for issue in errors
        ],
    )


async def check_definition(definition: Mapping[str, Any], plan: TenantPlan) -> dict[str, Any]:
    """The definition, once valid; validation runs in `offload`'s pool, off the event loop."""
    report = await offload.run(validate_workflow, definition, plan.limits)
    if not report.valid:
        raise refusal(report.errors)
    return dict(definition)


def _keeps_history(plan: TenantPlan) -> bool:
    return plan.limits.versioning >= Versioning.BASIC


async def _announce(session: AsyncSession, workflow: Workflow, previous_status: str | None) -> None:
    await events.append(
        session,
        "workflow_updated",
        {
            "event": "workflow_updated",
            "workflow_id": workflow.id,
            "name": workflow.name,
            "version": str(workflow.version),
            "previous_status": previous_status,
            "status": Status.DELETED if workflow.deleted_at else workflow.status,
            "updated_at": workflow.updated_at.isoformat(),
            "updated_by": workflow.updated_by,
        },
        workflow_id=workflow.id,
    )


def _snapshot(workflow: Workflow) -> WorkflowVersion:
    return WorkflowVersion(
        workflow_id=workflow.id,
        version=workflow.version,
        definition=workflow.definition,
        created_at=workflow.updated_at,
        created_by=workflow.updated_by,
    )


async def get(session: AsyncSession, workflow_id: str, *, for_update: bool = False) -> Workflow:
    workflow = await repository.get(session, workflow_id, for_update=for_update)
    if workflow is None:
        raise WorkflowNotFound(
            f"no workflow {workflow_id!r}", metadata={"workflow_id": workflow_id}
        )
    return workflow


async def list_page(
    session: AsyncSession,
    *,
    status: str | None,
    name_prefix: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Workflow]:
    """Live workflows, newest first; `after` is the previous page's last (created_at, id)."""
    return await repository.list_page(
        session, status=status, name_prefix=name_prefix, after=after, limit=limit
    )


async def find_created(session: AsyncSession, request_id: str) -> Workflow | None:
    """The workflow an earlier create with this idempotency key made, if any."""
    if not request_id:
        return None
    check_request_id(request_id)
    return await repository.get_by_request(session, request_id)


async def create(
    session: AsyncSession,
    plan: TenantPlan,
    actor: str,
    definition: Mapping[str, Any],
    *,
    request_id: str = "",
) -> Workflow:
    """A new draft, or the one an earlier call with `request_id` created."""
    existing = await find_created(session, request_id)
    if existing is not None:
        return existing
    checked = await check_definition(definition, plan)
    await consume(session, plan, Quota.WORKFLOWS)
    now = datetime.now(UTC)
    workflow = Workflow(
        id=str(uuid.uuid4()),
        name=checked["name"],
        status=Status.DRAFT,
        version=1,
        definition=checked,
        created_at=now,
        updated_at=now,
        created_by=actor,
        updated_by=actor,
        request_id=request_id or None,
    )
    repository.add(session, workflow)
    if _keeps_history(plan):
        repository.add(session, _snapshot(workflow))
    await _announce(session, workflow, None)
    return workflow


async def _replace_definition(
    session: AsyncSession,
    plan: TenantPlan,
    actor: str,
    workflow: Workflow,
    definition: dict[str, Any],
) -> Workflow:
    checked = await check_definition(definition, plan)
    if (
        _keeps_history(plan)
        and await repository.get_version(session, workflow.id, workflow.version) is None
    ):
        repository.add(session, _snapshot(workflow))  # history starts where the plan began it
    workflow.definition = checked
    workflow.name = checked["name"]
    workflow.version += 1
    workflow.updated_at = datetime.now(UTC)
    workflow.updated_by = actor
    if _keeps_history(plan):
        repository.add(session, _snapshot(workflow))
    await _announce(session, workflow, workflow.status)
    return workflow


async def update(
    session: AsyncSession,
    plan: TenantPlan,
    actor: str,
    workflow_id: str,
    changes: Mapping[str, Any],
) -> Workflow:
    """Apply `changes` (some of name, description, input_schema, steps) as a new version."""
    workflow = await get(session, workflow_id, for_update=True)
    return await _replace_definition(
        session, plan, actor, workflow, {**workflow.definition, **changes}
    )


async def delete(session: AsyncSession, plan: TenantPlan, actor: str, workflow_id: str) -> None:
    """Soft delete: reads stop finding it, its quota slot is freed, its versions remain."""
    workflow = await get(session, workflow_id, for_update=True)
    previous = workflow.status
    workflow.deleted_at = workflow.updated_at = datetime.now(UTC)
    workflow.updated_by = actor
    await release(session, plan, Quota.WORKFLOWS)
    await _announce(session, workflow, previous)


async def change_status(
    session: AsyncSession, plan: TenantPlan, actor: str, workflow_id: str, target: Status
) -> Workflow:
    """Activate or archive; activation re-checks the definition against today's plan."""
    workflow = await get(session, workflow_id, for_update=True)
    allowed_from = ACTIVATABLE if target is Status.ACTIVE else ARCHIVABLE
    if workflow.status == target:
        return workflow
    if workflow.status not in allowed_from:
        raise InvalidInput(
            f"a {workflow.status} workflow cannot become {target}",
            metadata={"workflow_id": workflow.id, "status": workflow.status},
            violations=[FieldViolation("id", f"workflow is {workflow.status}")],
        )
    if target is Status.ACTIVE:
        await check_definition(workflow.definition, plan)
    previous = workflow.status
    workflow.status = target
    workflow.updated_at = datetime.now(UTC)
    workflow.updated_by = actor
    await _announce(session, workflow, previous)
    return workflow


async def get_version(
    session: AsyncSession, plan: TenantPlan, workflow_id: str, version: int
) -> WorkflowVersion:
    require_feature(plan, "versioning", Versioning.BASIC)
    await get(session, workflow_id)
    return await _stored_version(session, workflow_id, version)


async def _stored_version(session: AsyncSession, workflow_id: str, version: int) -> WorkflowVersion:
    """A version of a workflow the caller has already found."""
    stored = await repository.get_version(session, workflow_id, version)
    if stored is None:
        raise WorkflowNotFound(
            f"workflow {workflow_id!r} has no stored version {version}",
            metadata={"workflow_id": workflow_id, "version": version},
        )
    return stored


async def list_versions(
    session: AsyncSession, plan: TenantPlan, workflow_id: str, *, before: int | None, limit: int
) -> Sequence[WorkflowVersion]:
    require_feature(plan, "versioning", Versioning.BASIC)
    await get(session, workflow_id)
    return await repository.list_versions(session, workflow_id, before=before, limit=limit)


async def revert(
    session: AsyncSession, plan: TenantPlan, actor: str, workflow_id: str, version: int
) -> Workflow:
    """Make `version`'s definition current again, as a new version (history is never rewritten)."""
    require_feature(plan, "versioning", Versioning.BASIC)
    workflow = await get(session, workflow_id, for_update=True)
    stored = await _stored_version(session, workflow_id, version)
    return await _replace_definition(session, plan, actor, workflow, dict(stored.definition))


async def publish(
    session: AsyncSession,
    plan: TenantPlan,
    actor: str,
    workflow_id: str,
    version: int,
    release_notes: str,
) -> WorkflowVersion:
    """Mark a stored version published with its release notes (once)."""
    require_feature(plan, "versioning", Versioning.FULL)
    workflow = await get(session, workflow_id, for_update=True)
    stored = await _stored_version(session, workflow_id, version or workflow.version)
    if stored.published_at is not None:
        raise InvalidInput(
            f"version {stored.version} is already published",
            metadata={"workflow_id": workflow_id, "version": stored.version},
            violations=[FieldViolation("version", "already published")],
        )
    stored.release_notes = release_notes
    stored.published_at = datetime.now(UTC)
    stored.published_by = actor
    workflow.published_version = max(workflow.published_version or 0, stored.version)
    await _announce(session, workflow, workflow.status)
    return stored
