"""A tenant's own templates: saved from its workflows, listed and used beside the catalog.

Each is a row of the tenant (`workflow_templates`), so no other tenant lists or uses one.
Saving one needs a plan whose template access is ALL_AND_CUSTOM (Enterprise); a tenant
keeps at most its plan's `max_custom_templates`, counted like its workflows, and each
holds a definition the plan accepts, so within `max_definition_bytes`. Ids share one
namespace with the catalog, which a tenant's template may never shadow.

Every function runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.errors import AlreadyExists, FieldViolation, InvalidInput
from persistence.models import WorkflowTemplate
from service.workflows import repository, templates
from service.workflows import service as workflows
from service.workflows.templates import CUSTOM_TIER, TEMPLATE_ID_PATTERN, Origin, Template
from service.workflows.validation import MAX_NAME_LENGTH
from tiers import Quota, TemplateAccess, TenantPlan, consume, require_feature

MAX_ID_LENGTH: Final = 63
MAX_DESCRIPTION_LENGTH: Final = 2000
MAX_CATEGORY_LENGTH: Final = 40


@dataclass(frozen=True, slots=True)
class TemplateFields:
    """What the caller chooses for a new template; the definition comes from a workflow."""

    id: str
    name: str
    description: str
    category: str


def _kebab(value: str, limit: int) -> bool:
    return len(value) <= limit and TEMPLATE_ID_PATTERN.fullmatch(value) is not None


def _violations(fields: TemplateFields) -> list[FieldViolation]:
    found = []
    if not _kebab(fields.id, MAX_ID_LENGTH):
        found.append(FieldViolation("template_id", f"kebab-case, 1 to {MAX_ID_LENGTH} characters"))
    if len(fields.name) > MAX_NAME_LENGTH or not fields.name.strip():
        found.append(FieldViolation("name", f"1 to {MAX_NAME_LENGTH} characters"))
    if len(fields.description) > MAX_DESCRIPTION_LENGTH:
        found.append(FieldViolation("description", f"at most {MAX_DESCRIPTION_LENGTH} characters"))
    if not _kebab(fields.category, MAX_CATEGORY_LENGTH):
        found.append(
            FieldViolation("category", f"kebab-case, 1 to {MAX_CATEGORY_LENGTH} characters")
        )
    return found


def _taken(template_id: str, by: str) -> AlreadyExists:
    return AlreadyExists(
        f"the template id {template_id!r} is taken by the {by}",
        metadata={"template_id": template_id, "taken_by": by},
        violations=[FieldViolation("template_id", f"taken by the {by}")],
    )


def template_of(row: WorkflowTemplate) -> Template:
    return Template(
        id=row.id,
        name=row.name,
        description=row.description,
        category=row.category,
        tier=CUSTOM_TIER,
        workflow=row.definition,
        origin=Origin(row.source_workflow_id, row.source_version, row.created_at, row.created_by),
    )


async def save(
    session: AsyncSession,
    plan: TenantPlan,
    actor: str,
    workflow_id: str,
    version: int,
    fields: TemplateFields,
) -> Template:
    """A new template of the tenant, copying the workflow's current definition or `version`.

    Every refusal comes before anything is written: the plan, the fields, the id, the
    workflow, its definition under today's plan, then the count.
    """
    require_feature(plan, "templates", TemplateAccess.ALL_AND_CUSTOM)
    problems = _violations(fields)
    if problems:
        raise InvalidInput(
            "the template's " + ", ".join(v.field for v in problems) + " are invalid",
            violations=problems,
        )
    if fields.id in templates.catalog():
        raise _taken(fields.id, "catalog")
    if await repository.get_template(session, fields.id) is not None:
        raise _taken(fields.id, "tenant")
    workflow = await workflows.get(session, workflow_id)
    definition = workflow.definition
    if version and version != workflow.version:
        definition = (await workflows.get_version(session, plan, workflow_id, version)).definition
    checked = await workflows.check_definition(definition, plan)
    await consume(session, plan, Quota.CUSTOM_TEMPLATES)
    row = WorkflowTemplate(
        id=fields.id,
        name=fields.name.strip(),
        description=fields.description.strip(),
        category=fields.category,
        definition=checked,
        source_workflow_id=workflow.id,
        source_version=version or workflow.version,
        created_at=datetime.now(UTC),
        created_by=actor,
    )
    repository.add(session, row)
    try:
        await session.flush()  # a concurrent save of the same id loses here, not at commit
    except IntegrityError:
        raise _taken(fields.id, "tenant") from None
    return template_of(row)


async def find(session: AsyncSession, template_id: str) -> Template | None:
    """The tenant's own template with this id, if it has one."""
    if not _kebab(template_id, MAX_ID_LENGTH):
        return None
    row = await repository.get_template(session, template_id)
    return None if row is None else template_of(row)


async def page(session: AsyncSession, *, after: str | None, limit: int) -> Sequence[Template]:
    """The tenant's own templates by id; `after` is the previous page's last id."""
    rows = await repository.list_templates(session, after=after, limit=limit)
    return [template_of(row) for row in rows]
