"""WorkflowService over a real channel, on every backend: CRUD, life cycle, limits, versions."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from sqlalchemy import select

from persistence.models import Event
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info, token
from tests.workflow_helpers import create, definition, message, stub, update_steps
from wfe.v1 import workflow_pb2


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    assert isinstance(error, aio.AioRpcError)
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


async def test_other_tenants_workflow_is_not_found(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    owner, other = await new_tenant("professional"), await new_tenant("professional")
    created = await create(channel, owner)
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).GetWorkflow(
            workflow_pb2.GetWorkflowRequest(id=created.id), metadata=auth(other)
        )
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "WORKFLOW_NOT_FOUND")
    assert created.name not in caught.value.details()


async def test_create_returns_a_draft_at_version_one(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    created = await create(channel, tenant)
    assert created.id and created.status == workflow_pb2.WORKFLOW_STATUS_DRAFT
    assert (created.version, created.created_by, created.name) == (1, "user-1", "Enrichment")
    assert [s.id for s in created.steps][:2] == ["input", "lookup"]
    assert created.steps[1].on_error == workflow_pb2.ERROR_POLICY_RETRY
    assert created.steps[1].retry.max_attempts == 3
    fetched = await stub(channel).GetWorkflow(
        workflow_pb2.GetWorkflowRequest(id=created.id), metadata=auth(tenant)
    )
    assert fetched.workflow == created


async def test_retried_create_with_the_same_request_id_returns_the_same_workflow(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    request_id = str(uuid.uuid4())
    results = await asyncio.gather(
        *(create(channel, tenant, request_id=request_id) for _ in range(5))
    )
    assert len({w.id for w in results}) == 1
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant)
    )
    assert len(listed.workflows) == 1


async def test_invalid_definition_is_refused_with_every_violation_and_nothing_stored(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    broken = definition()
    broken["steps"][0]["next"] = "nowhere"
    del broken["steps"][-3]["config"]["default"]
    with pytest.raises(grpc.RpcError) as caught:
        await create(channel, tenant, broken)
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
    fields = dict(violations(caught.value))
    assert fields["steps[0].next"].startswith("unknown_step_reference")
    assert fields["steps[2].config.default"].startswith("missing_default")
    assert int(metadata["error_count"]) >= 2
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant)
    )
    assert list(listed.workflows) == []


async def test_twenty_concurrent_creates_on_a_free_tenant_with_four_workflows_create_one(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    for index in range(4):
        await create(channel, tenant, definition(f"existing {index}"))

    async def attempt(index: int) -> grpc.StatusCode | None:
        try:
            await create(channel, tenant, definition(f"racing {index}"))
        except grpc.RpcError as error:
            code, reason, metadata = error_info(error)
            assert reason == "TIER_RESTRICTION" and metadata["limit"] == "5"
            return code
        return None

    outcomes = await asyncio.gather(*(attempt(i) for i in range(20)))
    assert outcomes.count(None) == 1
    assert set(outcomes) - {None} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant)
    )
    assert len(listed.workflows) == 5


async def test_plan_step_types_and_step_count_are_checked_on_every_write(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    for document, field in (
        (definition(advanced=True), "steps[2].type"),
        (definition(extra_tools=6), "steps"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            await create(channel, tenant, document)
        assert error_info(caught.value)[1] == "INVALID_WORKFLOW_DEFINITION"
        assert dict(violations(caught.value))[field].startswith("tier_restriction")
    created = await create(channel, tenant)
    with pytest.raises(grpc.RpcError) as caught:
        await update_steps(channel, tenant, created.id, definition(advanced=True))
    assert dict(violations(caught.value))["steps[2].type"].startswith("tier_restriction")
    professional = await new_tenant("professional")
    assert (await create(channel, professional, definition(advanced=True))).version == 1


async def test_list_pages_through_every_workflow_and_filters(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    names = [f"Alpha {i}" for i in range(5)] + ["Beta"]
    created = [await create(channel, tenant, definition(name)) for name in names]
    await stub(channel).ActivateWorkflow(
        workflow_pb2.ActivateWorkflowRequest(id=created[0].id), metadata=auth(tenant)
    )
    seen, page_token, pages = [], "", 0
    while True:
        page = await stub(channel).ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(
                page_size=2, page_token=page_token, name_prefix="Alpha"
            ),
            metadata=auth(tenant),
        )
        seen += [w.name for w in page.workflows]
        pages += 1
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == list(reversed(names[:5])) and pages == 3
    active = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(status=workflow_pb2.WORKFLOW_STATUS_ACTIVE),
        metadata=auth(tenant),
    )
    assert [w.id for w in active.workflows] == [created[0].id]
    first = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(page_size=1), metadata=auth(tenant)
    )
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(page_size=1, page_token=first.next_page_token),
            metadata=auth(await new_tenant("professional")),
        )
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")


async def test_update_changes_only_the_masked_fields_and_bumps_the_version(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    created = await create(channel, tenant)
    proposed = message(definition("Renamed"))
    proposed.id = created.id
    proposed.description = "not in the mask"
    request = workflow_pb2.UpdateWorkflowRequest(workflow=proposed)
    request.update_mask.paths.append("name")
    updated = (await stub(channel).UpdateWorkflow(request, metadata=auth(tenant))).workflow
    assert (updated.name, updated.description, updated.version) == (
        "Renamed",
        created.description,
        2,
    )
    request.update_mask.paths[:] = ["status"]
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).UpdateWorkflow(request, metadata=auth(tenant))
    assert error_info(caught.value)[1] == "INVALID_INPUT"


async def test_life_cycle_changes_append_workflow_updated_events(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    created = await create(channel, tenant)
    activated = await stub(channel).ActivateWorkflow(
        workflow_pb2.ActivateWorkflowRequest(id=created.id), metadata=auth(tenant)
    )
    assert activated.workflow.status == workflow_pb2.WORKFLOW_STATUS_ACTIVE
    await stub(channel).ArchiveWorkflow(
        workflow_pb2.ArchiveWorkflowRequest(id=created.id), metadata=auth(tenant)
    )
    await stub(channel).DeleteWorkflow(
        workflow_pb2.DeleteWorkflowRequest(id=created.id), metadata=auth(tenant, roles=["admin"])
    )
    async with database.transaction(TenantId(tenant)) as session:
        found = (await session.scalars(select(Event).order_by(Event.id))).all()
    transitions = [(e.payload["previous_status"], e.payload["status"]) for e in found]
    assert transitions == [
        (None, "draft"),
        ("draft", "active"),
        ("active", "archived"),
        ("archived", "deleted"),
    ]
    assert {e.type for e in found} == {"workflow_updated"}
    assert found[1].payload.keys() == {
        "event",
        "workflow_id",
        "name",
        "version",
        "previous_status",
        "status",
        "updated_at",
        "updated_by",
    }
    assert (found[1].payload["workflow_id"], found[1].payload["updated_by"]) == (
        created.id,
        "user-1",
    )
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).GetWorkflow(
            workflow_pb2.GetWorkflowRequest(id=created.id), metadata=auth(tenant)
        )
    assert error_info(caught.value)[1] == "WORKFLOW_NOT_FOUND"


async def test_deleting_frees_a_slot_of_the_plan(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    made = [await create(channel, tenant, definition(f"w{i}")) for i in range(5)]
    with pytest.raises(grpc.RpcError):
        await create(channel, tenant)
    await stub(channel).DeleteWorkflow(
        workflow_pb2.DeleteWorkflowRequest(id=made[0].id), metadata=auth(tenant, roles=["admin"])
    )
    assert (await create(channel, tenant)).version == 1


async def test_free_tier_keeps_no_version_history(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    created = await create(channel, tenant)
    updated = await update_steps(channel, tenant, created.id, definition(extra_tools=1))
    assert updated.version == 2
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).ListWorkflowVersions(
            workflow_pb2.ListWorkflowVersionsRequest(workflow_id=created.id),
            metadata=auth(tenant),
        )
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TIER_RESTRICTION")
    assert (metadata["tier"], metadata["feature"]) == ("free", "versioning")


async def test_professional_updates_create_versions_that_can_be_reverted_to(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    created = await create(channel, tenant)
    await update_steps(channel, tenant, created.id, definition(extra_tools=1))
    await update_steps(channel, tenant, created.id, definition(extra_tools=2))
    listed = await stub(channel).ListWorkflowVersions(
        workflow_pb2.ListWorkflowVersionsRequest(workflow_id=created.id, page_size=2),
        metadata=auth(tenant),
    )
    assert [v.version for v in listed.versions] == [3, 2] and listed.next_page_token
    first = await stub(channel).GetWorkflowVersion(
        workflow_pb2.GetWorkflowVersionRequest(workflow_id=created.id, version=1),
        metadata=auth(tenant),
    )
    assert list(first.version.steps) == list(created.steps)
    reverted = await stub(channel).RevertWorkflow(
        workflow_pb2.RevertWorkflowRequest(workflow_id=created.id, version=1),
        metadata=auth(tenant),
    )
    assert reverted.workflow.version == 4
    assert list(reverted.workflow.steps) == list(created.steps)
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).DiffWorkflowVersions(
            workflow_pb2.DiffWorkflowVersionsRequest(
                workflow_id=created.id, from_version=1, to_version=2
            ),
            metadata=auth(tenant),
        )
    assert error_info(caught.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "TIER_RESTRICTION",
    )


async def test_enterprise_diffs_versions_step_by_step_and_publishes_with_notes(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    created = await create(channel, tenant)
    changed = definition(extra_tools=1)
    changed["steps"][1]["timeout"] = "20s"
    await update_steps(channel, tenant, created.id, changed)
    found = await stub(channel).DiffWorkflowVersions(
        workflow_pb2.DiffWorkflowVersionsRequest(
            workflow_id=created.id, from_version=1, to_version=2
        ),
        metadata=auth(tenant),
    )
    assert [s.id for s in found.added_steps] == ["tool_0"]
    assert list(found.removed_steps) == []
    changes = {c.step_id: {f.field for f in c.fields} for c in found.changed_steps}
    assert changes == {"lookup": {"next", "timeout"}}
    assert list(found.changed_fields) == []  # tool_0 was inserted; no common step moved
    published = await stub(channel).PublishWorkflow(
        workflow_pb2.PublishWorkflowRequest(workflow_id=created.id, release_notes="Adds a log"),
        metadata=auth(tenant, roles=["admin"]),
    )
    assert (published.version.version, published.version.release_notes) == (2, "Adds a log")
    assert published.version.publish_time.seconds > 0
    fetched = await stub(channel).GetWorkflow(
        workflow_pb2.GetWorkflowRequest(id=created.id), metadata=auth(tenant)
    )
    assert fetched.workflow.published_version == 2


async def test_downgraded_tenant_reads_its_workflows_but_cannot_write_beyond_its_plan(
    channel: aio.Channel, admin_database: TenantDatabase, new_tenant: NewTenant
) -> None:
    from service.tenants import service as tenants

    tenant = await new_tenant("professional")
    advanced = await create(channel, tenant, definition("Advanced", advanced=True))
    for index in range(5):
        await create(channel, tenant, definition(f"basic {index}"))
    async with admin_database.transaction(None) as session:
        await tenants.set_tier(session, tenant, "free")
    fetched = await stub(channel).GetWorkflow(
        workflow_pb2.GetWorkflowRequest(id=advanced.id), metadata=auth(tenant)
    )
    assert fetched.workflow == advanced
    with pytest.raises(grpc.RpcError) as caught:
        await create(channel, tenant)
    assert error_info(caught.value)[:2] == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TIER_RESTRICTION",
    )
    for call in (
        stub(channel).ActivateWorkflow(
            workflow_pb2.ActivateWorkflowRequest(id=advanced.id), metadata=auth(tenant)
        ),
        update_steps(channel, tenant, advanced.id, definition(advanced=True)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            await call
        assert dict(violations(caught.value))["steps[2].type"].startswith("tier_restriction")


async def test_validate_step_answers_the_seeds_example(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    step = message(
        {
            "name": "x",
            "steps": [
                {
                    "id": "decision",
                    "type": "condition",
                    "name": "Check Enrichment Success",
                    "config": {
                        "conditions": [
                            {"condition": "$.enrich_data.success == true", "next": "output_success"}
                        ],
                        "default": "output_failure",
                    },
                }
            ],
        }
    ).steps[0]
    request = workflow_pb2.ValidateStepRequest(step=step)
    request.context.available_steps.extend(
        ["input", "lookup", "enrich_data", "output_success", "output_failure"]
    )
    answer = await stub(channel).ValidateStep(request, metadata=auth(tenant))
    assert answer.valid and list(answer.errors) == []
    assert [(w.code, w.message, w.step_id) for w in answer.warnings] == [
        (
            "expression_simplification",
            "the expression could be simplified to '$.enrich_data.success'",
            "decision",
        )
    ]


async def test_validate_workflow_reports_plan_and_expression_problems(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    document = definition(advanced=True)
    document["steps"][3]["config"]["conditions"][0]["condition"] = "$.lookup.status_code == "
    answer = await stub(channel).ValidateWorkflow(
        workflow_pb2.ValidateWorkflowRequest(workflow=message(document)), metadata=auth(tenant)
    )
    assert not answer.valid
    found = {(e.code, e.field): e for e in answer.errors}
    assert ("tier_restriction", "steps[2].type") in found
    expression = found[("invalid_expression", "steps[3].config.conditions[0].condition")]
    assert expression.step_id == "decision" and expression.HasField("position")


async def test_step_types_are_published_with_schemas_and_plan_availability(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    answer = await stub(channel).ListStepTypes(
        workflow_pb2.ListStepTypesRequest(), metadata=auth(tenant)
    )
    available = {t.type: t.available for t in answer.step_types}
    assert available["condition"] and available["tool"] and not available["loop"]
    assert not available["custom"]
    condition = next(t for t in answer.step_types if t.type == "condition")
    assert condition.config_schema["required"] == ["conditions"]
    assert {t.name for t in answer.tools} == {"http_request", "transform", "log"}


async def test_free_tenant_sees_five_usable_templates_and_cannot_use_the_others(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    listed = await stub(channel).ListTemplates(
        workflow_pb2.ListTemplatesRequest(page_size=200), metadata=auth(tenant)
    )
    assert len(listed.templates) >= 20
    usable = [t.id for t in listed.templates if t.available]
    assert len(usable) == 5 and "customer-enrichment" in usable
    created = await stub(channel).CreateWorkflowFromTemplate(
        workflow_pb2.CreateWorkflowFromTemplateRequest(
            template_id="customer-enrichment", name="My enrichment"
        ),
        metadata=auth(tenant),
    )
    assert created.workflow.name == "My enrichment"
    assert [s.id for s in created.workflow.steps] == [
        "input",
        "lookup",
        "enrich_data",
        "decision",
        "output_success",
        "output_failure",
    ]
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).CreateWorkflowFromTemplate(
            workflow_pb2.CreateWorkflowFromTemplateRequest(template_id="document-processing"),
            metadata=auth(tenant),
        )
    code, reason, metadata = error_info(caught.value)
    assert (code, reason, metadata["feature"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "TIER_RESTRICTION",
        "templates",
    )


async def test_diagram_is_a_mermaid_flowchart_of_the_definition(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    created = await create(channel, tenant)
    diagram = await stub(channel).GetWorkflowDiagram(
        workflow_pb2.GetWorkflowDiagramRequest(workflow_id=created.id), metadata=auth(tenant)
    )
    assert diagram.mermaid.startswith("flowchart TD")
    assert '"$.lookup.status_code == 200"' in diagram.mermaid
    assert "Customer Lookup" in diagram.mermaid


async def test_tokens_without_the_tenant_cannot_create(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant, other = await new_tenant("free"), await new_tenant("free")
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(workflow=message(definition())),
            metadata=(("authorization", f"Bearer {token([other])}"), ("x-tenant-id", tenant)),
        )
    assert error_info(caught.value)[1] == "PERMISSION_DENIED"


async def test_a_config_value_json_cannot_carry_is_refused_as_invalid(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    proposed = message(definition())
    proposed.steps[1].config["arguments"]["timeout_seconds"] = float("inf")
    with pytest.raises(aio.AioRpcError) as caught:
        await stub(channel).ValidateWorkflow(
            workflow_pb2.ValidateWorkflowRequest(workflow=proposed), metadata=auth(tenant)
        )
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
