"""`wfe.v1.WorkflowService`: messages in and out; the work is in `service.workflows`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeAlias

from grpc import aio

from engine.stats import workflow_stats
from engine.steptypes import MINIMUM_TIER, STEP_TYPES, published_schema
from engine.tools import installed
from foundation.errors import FieldViolation, InvalidInput, InvalidWorkflowDefinition
from persistence.models import Workflow
from service import offload, pagination
from service.idempotency import create_once
from service.servicers import values
from service.servicers.messages import TIERS
from service.servicers.stats import stats_message, stats_window
from service.servicers.workflow_messages import (
    STATUS_FILTERS,
    TOOL_MODES,
    UPDATABLE,
    change_message,
    issue_messages,
    struct,
    template_message,
    version_message,
    workflow_message,
)
from service.workflows import custom_templates, documents, templates
from service.workflows import service as workflows
from service.workflows.diagram import mermaid
from service.workflows.diff import diff
from service.workflows.issues import Report
from service.workflows.validation import too_many_steps, validate_step, validate_workflow
from tenancy import current_identity
from tenancy.database import TenantDatabase
from tiers import (
    Monitoring,
    PlanLimits,
    PlannedSession,
    TemplateAccess,
    TenantPlan,
    Tier,
    Versioning,
    planned_transaction,
    require_feature,
)
from wfe.v1 import workflow_pb2, workflow_pb2_grpc

Context: TypeAlias = aio.ServicerContext[Any, Any]
Status = workflows.Status


def _validate(workflow: workflow_pb2.Workflow, limits: PlanLimits) -> Report:
    """ValidateWorkflow's work, conversion included: all of it grows with the definition."""
    too_many = too_many_steps(len(workflow.steps), limits)  # then converting them is waste
    return too_many or validate_workflow(documents.definition_of(workflow), limits)


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, database: TenantDatabase, tokens: pagination.PageTokens, limit: int) -> None:
        self._database = database
        self._tokens = tokens
        self._budget = limit - pagination.ANSWER_HEADROOM

    def _unit(self) -> AbstractAsyncContextManager[PlannedSession]:
        """The call's transaction in its tenant, with the plan in force."""
        return planned_transaction(self._database, current_identity().tenant_id)

    async def _plan(self) -> TenantPlan:
        async with self._unit() as work:
            return work.plan

    async def _refuse_too_many_steps(self, workflow: workflow_pb2.Workflow) -> None:
        """The plan's step limit, read off the message before any walk over the definition."""
        refused = too_many_steps(len(workflow.steps), (await self._plan()).limits)
        if refused is not None:
            raise workflows.refusal(refused.errors)

    async def _create(self, definition: dict[str, Any], request_id: str) -> workflow_pb2.Workflow:
        actor = current_identity().subject

        async def create() -> Workflow:
            async with self._unit() as work:
                return await workflows.create(
                    work.session, work.plan, actor, definition, request_id=request_id
                )

        async def find() -> Workflow | None:
            async with self._unit() as work:
                return await workflows.find_created(work.session, request_id)

        return workflow_message(await create_once(request_id, create, find))

    async def CreateWorkflow(
        self, request: workflow_pb2.CreateWorkflowRequest, context: Context
    ) -> workflow_pb2.CreateWorkflowResponse:
        await self._refuse_too_many_steps(request.workflow)
        await values.finite(request.workflow, "workflow", InvalidWorkflowDefinition)
        proposed = await offload.run(documents.definition_of, request.workflow)  # grows with it
        created = await self._create(proposed, request.request_id)
        return workflow_pb2.CreateWorkflowResponse(workflow=created)

    async def GetWorkflow(
        self, request: workflow_pb2.GetWorkflowRequest, context: Context
    ) -> workflow_pb2.GetWorkflowResponse:
        async with self._unit() as work:
            row = await workflows.get(work.session, request.id)
            return workflow_pb2.GetWorkflowResponse(workflow=workflow_message(row))

    async def ListWorkflows(
        self, request: workflow_pb2.ListWorkflowsRequest, context: Context
    ) -> workflow_pb2.ListWorkflowsResponse:
        size = pagination.page_size(request.page_size)
        tenant = current_identity().tenant_id
        status = STATUS_FILTERS.get(request.status)
        if request.status and status is None:
            raise InvalidInput(
                "unknown status filter", violations=[FieldViolation("status", "unknown value")]
            )
        listing = f"workflows:{status or ''}:{request.name_prefix}"
        key = self._tokens.decode(request.page_token, tenant, listing)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        async with self._unit() as work:
            rows = await workflows.list_page(
                work.session,
                status=status,
                name_prefix=request.name_prefix,
                after=after,
                limit=size + 1,
            )
            page = [workflow_message(row) for row in rows[:size]]
        del page[pagination.fitting([m.ByteSize() for m in page], self._budget) :]
        token = self._tokens.after(rows, len(page), tenant, listing, pagination.creation_key)
        return workflow_pb2.ListWorkflowsResponse(workflows=page, next_page_token=token)

    async def UpdateWorkflow(
        self, request: workflow_pb2.UpdateWorkflowRequest, context: Context
    ) -> workflow_pb2.UpdateWorkflowResponse:
        paths = list(request.update_mask.paths) or sorted(UPDATABLE)
        unknown = sorted(set(paths) - UPDATABLE)
        if unknown:
            raise InvalidInput(
                f"update_mask names fields that cannot be updated: {', '.join(unknown)}",
                violations=[
                    FieldViolation("update_mask", f"unknown or read-only: {p}") for p in unknown
                ],
            )
        await self._refuse_too_many_steps(request.workflow)
        await values.finite(request.workflow, "workflow", InvalidWorkflowDefinition)
        proposed = await offload.run(documents.definition_of, request.workflow)
        async with self._unit() as work:
            session, plan = work.session, work.plan
            row = await workflows.update(
                session,
                plan,
                current_identity().subject,
                request.workflow.id,
                {path: proposed[path] for path in paths},
            )
            return workflow_pb2.UpdateWorkflowResponse(workflow=workflow_message(row))

    async def DeleteWorkflow(
        self, request: workflow_pb2.DeleteWorkflowRequest, context: Context
    ) -> workflow_pb2.DeleteWorkflowResponse:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            await workflows.delete(session, plan, current_identity().subject, request.id)
        return workflow_pb2.DeleteWorkflowResponse()

    async def _set_status(self, workflow_id: str, target: Status) -> workflow_pb2.Workflow:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            row = await workflows.change_status(
                session, plan, current_identity().subject, workflow_id, target
            )
            return workflow_message(row)

    async def ActivateWorkflow(
        self, request: workflow_pb2.ActivateWorkflowRequest, context: Context
    ) -> workflow_pb2.ActivateWorkflowResponse:
        return workflow_pb2.ActivateWorkflowResponse(
            workflow=await self._set_status(request.id, Status.ACTIVE)
        )

    async def ArchiveWorkflow(
        self, request: workflow_pb2.ArchiveWorkflowRequest, context: Context
    ) -> workflow_pb2.ArchiveWorkflowResponse:
        return workflow_pb2.ArchiveWorkflowResponse(
            workflow=await self._set_status(request.id, Status.ARCHIVED)
        )

    async def ValidateWorkflow(
        self, request: workflow_pb2.ValidateWorkflowRequest, context: Context
    ) -> workflow_pb2.ValidateWorkflowResponse:
        plan = await self._plan()
        early = too_many_steps(len(request.workflow.steps), plan.limits)
        if early is not None:
            return workflow_pb2.ValidateWorkflowResponse(**issue_messages(early))
        await values.finite(request.workflow, "workflow", InvalidWorkflowDefinition)
        report = await offload.run(_validate, request.workflow, plan.limits)
        return workflow_pb2.ValidateWorkflowResponse(**issue_messages(report))

    async def ValidateStep(
        self, request: workflow_pb2.ValidateStepRequest, context: Context
    ) -> workflow_pb2.ValidateStepResponse:
        await values.finite(request.step, "step", InvalidWorkflowDefinition)
        plan = await self._plan()
        report = await offload.run(
            validate_step,
            documents.step_to_dict(request.step),
            list(request.context.available_steps),
            await values.finite_dict(
                request.context.input_schema, "context.input_schema", InvalidWorkflowDefinition
            ),
            plan.limits,
        )
        return workflow_pb2.ValidateStepResponse(**issue_messages(report))

    async def ListStepTypes(
        self, request: workflow_pb2.ListStepTypesRequest, context: Context
    ) -> workflow_pb2.ListStepTypesResponse:
        plan = await self._plan()
        tools = installed()
        return workflow_pb2.ListStepTypesResponse(
            step_types=[
                workflow_pb2.StepType(
                    type=step_type.name,
                    category=step_type.category,
                    description=step_type.description,
                    config_schema=struct(
                        published_schema(
                            step_type, [s.name for s in tools.specs() if not s.adapter]
                        )
                    ),
                    available=plan.limits.step_types >= step_type.access,
                    minimum_tier=TIERS[Tier(MINIMUM_TIER[step_type.access])],
                )
                for step_type in STEP_TYPES.values()
            ],
            tools=[
                workflow_pb2.ToolDescriptor(
                    name=tool.name,
                    description=tool.description,
                    arguments_schema=struct(tool.arguments_schema),
                    output_schema=struct(tool.output_schema),
                    mode=TOOL_MODES[tool.mode],
                    available=plan.limits.step_types >= tool.access
                    and (not tool.adapter or tool.name in plan.limits.adapters),
                    minimum_tier=TIERS[tool.minimum_tier],
                )
                for tool in tools.specs()
            ],
        )

    async def ListWorkflowVersions(
        self, request: workflow_pb2.ListWorkflowVersionsRequest, context: Context
    ) -> workflow_pb2.ListWorkflowVersionsResponse:
        size = pagination.page_size(request.page_size)
        tenant = current_identity().tenant_id
        listing = f"versions:{request.workflow_id}"
        key = self._tokens.decode(request.page_token, tenant, listing)
        async with self._unit() as work:
            session, plan = work.session, work.plan
            rows = await workflows.list_versions(
                session,
                plan,
                request.workflow_id,
                before=int(key[0]) if key else None,
                limit=size + 1,
            )
            page = [version_message(row) for row in rows[:size]]
        del page[pagination.fitting([m.ByteSize() for m in page], self._budget) :]
        token = self._tokens.after(rows, len(page), tenant, listing, lambda row: [row.version])
        return workflow_pb2.ListWorkflowVersionsResponse(versions=page, next_page_token=token)

    async def GetWorkflowVersion(
        self, request: workflow_pb2.GetWorkflowVersionRequest, context: Context
    ) -> workflow_pb2.GetWorkflowVersionResponse:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            row = await workflows.get_version(session, plan, request.workflow_id, request.version)
            return workflow_pb2.GetWorkflowVersionResponse(version=version_message(row))

    async def RevertWorkflow(
        self, request: workflow_pb2.RevertWorkflowRequest, context: Context
    ) -> workflow_pb2.RevertWorkflowResponse:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            row = await workflows.revert(
                session, plan, current_identity().subject, request.workflow_id, request.version
            )
            return workflow_pb2.RevertWorkflowResponse(workflow=workflow_message(row))

    async def DiffWorkflowVersions(
        self, request: workflow_pb2.DiffWorkflowVersionsRequest, context: Context
    ) -> workflow_pb2.DiffWorkflowVersionsResponse:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            require_feature(plan, "versioning", Versioning.FULL)
            older = await workflows.get_version(
                session, plan, request.workflow_id, request.from_version
            )
            newer = await workflows.get_version(
                session, plan, request.workflow_id, request.to_version
            )
        found = diff(older.definition, newer.definition)
        return workflow_pb2.DiffWorkflowVersionsResponse(
            added_steps=[documents.step_from_dict(step) for step in found.added_steps],
            removed_steps=[documents.step_from_dict(step) for step in found.removed_steps],
            changed_steps=[
                workflow_pb2.StepChange(
                    step_id=step_id, fields=[change_message(c) for c in changes]
                )
                for step_id, changes in found.changed_steps.items()
            ],
            changed_fields=[change_message(c) for c in found.changed_fields],
        )

    async def PublishWorkflow(
        self, request: workflow_pb2.PublishWorkflowRequest, context: Context
    ) -> workflow_pb2.PublishWorkflowResponse:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            row = await workflows.publish(
                session,
                plan,
                current_identity().subject,
                request.workflow_id,
                request.version,
                request.release_notes,
            )
            return workflow_pb2.PublishWorkflowResponse(version=version_message(row))

    async def ListTemplates(
        self, request: workflow_pb2.ListTemplatesRequest, context: Context
    ) -> workflow_pb2.ListTemplatesResponse:
        """The catalog, then the tenant's own templates; a token is [catalog index] while in
        the catalog, [catalog length, last id] once among the tenant's."""
        size = pagination.page_size(request.page_size)
        tenant = current_identity().tenant_id
        listing = f"templates:{request.available_only}"
        key = self._tokens.decode(request.page_token, tenant, listing)
        start = int(key[0]) if key else 0
        after = str(key[1]) if key and len(key) > 1 else None
        async with self._unit() as work:
            access = work.plan.limits.templates
            shown = [(t, access >= t.access) for t in templates.catalog().values()]
            if request.available_only:
                shown = [(template, True) for template, available in shown if available]
            entries = [] if after is not None else shown[start : start + size + 1]
            if len(entries) <= size and (
                access >= TemplateAccess.ALL_AND_CUSTOM or not request.available_only
            ):
                owned = await custom_templates.page(
                    work.session, after=after, limit=size + 1 - len(entries)
                )
                entries += [(template, access >= template.access) for template in owned]
        page = [template_message(template, available) for template, available in entries[:size]]
        del page[pagination.fitting([m.ByteSize() for m in page], self._budget) :]
        token = ""
        if len(entries) > len(page):
            last = entries[len(page) - 1][0]
            position = [len(shown), last.id] if last.custom else [start + len(page)]
            token = self._tokens.encode(tenant, listing, position)
        return workflow_pb2.ListTemplatesResponse(templates=page, next_page_token=token)

    async def CreateWorkflowFromTemplate(
        self, request: workflow_pb2.CreateWorkflowFromTemplateRequest, context: Context
    ) -> workflow_pb2.CreateWorkflowFromTemplateResponse:
        template = templates.catalog().get(request.template_id)
        async with self._unit() as work:
            plan = work.plan
            if template is None:
                template = await custom_templates.find(work.session, request.template_id)
        if template is None:
            raise InvalidInput(
                f"no template {request.template_id!r}",
                metadata={"template_id": request.template_id},
                violations=[FieldViolation("template_id", "no such template")],
            )
        require_feature(plan, "templates", template.access)
        definition = documents.definition_of(documents.parse_document(template.workflow))
        if request.name:
            definition["name"] = request.name
        created = await self._create(definition, request.request_id)
        return workflow_pb2.CreateWorkflowFromTemplateResponse(workflow=created)

    async def SaveAsTemplate(
        self, request: workflow_pb2.SaveAsTemplateRequest, context: Context
    ) -> workflow_pb2.SaveAsTemplateResponse:
        fields = custom_templates.TemplateFields(
            id=request.template_id,
            name=request.name,
            description=request.description,
            category=request.category,
        )
        async with self._unit() as work:
            saved = await custom_templates.save(
                work.session,
                work.plan,
                current_identity().subject,
                request.workflow_id,
                request.version,
                fields,
            )
        return workflow_pb2.SaveAsTemplateResponse(template=template_message(saved, True))

    async def GetWorkflowStats(
        self, request: workflow_pb2.GetWorkflowStatsRequest, context: Context
    ) -> workflow_pb2.GetWorkflowStatsResponse:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            workflow = await workflows.get(session, request.workflow_id)
            start, end = stats_window(request, plan.limits.history_retention_days)
            found = await workflow_stats(
                session,
                workflow.id,
                start,
                end,
                include_tests=request.include_tests,
                per_step=plan.limits.monitoring >= Monitoring.FULL,
                order=[step["id"] for step in workflow.definition.get("steps", [])],
            )
        return workflow_pb2.GetWorkflowStatsResponse(stats=stats_message(found))

    async def GetWorkflowDiagram(
        self, request: workflow_pb2.GetWorkflowDiagramRequest, context: Context
    ) -> workflow_pb2.GetWorkflowDiagramResponse:
        async with self._unit() as work:
            session, plan = work.session, work.plan
            row = await workflows.get(session, request.workflow_id)
            definition = row.definition
            if request.version and request.version != row.version:
                stored = await workflows.get_version(
                    session, plan, request.workflow_id, request.version
                )
                definition = stored.definition
        return workflow_pb2.GetWorkflowDiagramResponse(mermaid=mermaid(definition))
