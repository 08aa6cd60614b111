"""Templates over a real channel, on every backend: the catalog per tier, and the
Enterprise tenant's own templates (SaveAsTemplate), confined to their tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import grpc
import pytest
from grpc import aio
from sqlalchemy import select

from persistence.models import WorkflowTemplate
from service.tenants import service as tenants
from service.workflows.templates import catalog
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info
from tests.workflow_helpers import create, definition, stub, update_steps
from wfe.v1 import tenant_pb2, tenant_pb2_grpc, workflow_pb2


async def save(
    channel: aio.Channel,
    tenant: str,
    workflow_id: str,
    template_id: str,
    *,
    version: int = 0,
    **fields: str,
) -> workflow_pb2.Template:
    request = workflow_pb2.SaveAsTemplateRequest(
        workflow_id=workflow_id,
        version=version,
        template_id=template_id,
        name=fields.get("name", "Regional enrichment"),
        description=fields.get("description", "Our enrichment, with the EU lookup."),
        category=fields.get("category", "sales"),
    )
    return (await stub(channel).SaveAsTemplate(request, metadata=auth(tenant))).template


async def refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        await call
    return error_info(caught.value)


async def listed(
    channel: aio.Channel, tenant: str, *, available_only: bool = False
) -> list[workflow_pb2.Template]:
    answer = await stub(channel).ListTemplates(
        workflow_pb2.ListTemplatesRequest(page_size=200, available_only=available_only),
        metadata=auth(tenant),
    )
    assert answer.next_page_token == ""
    return list(answer.templates)


async def stored(database: TenantDatabase, tenant: str) -> list[str]:
    """The ids of the tenant's custom templates, as the database holds them."""
    async with database.transaction(TenantId(tenant)) as session:
        return list(await session.scalars(select(WorkflowTemplate.id).order_by("id")))


async def custom_templates_used(channel: aio.Channel, tenant: str) -> int:
    answer = await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
        tenant_pb2.GetTenantRequest(), metadata=auth(tenant)
    )
    return answer.tenant.usage.custom_templates


async def test_another_tenant_never_sees_or_uses_a_custom_template(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    owner, other = await new_tenant("enterprise"), await new_tenant("enterprise")
    workflow = await create(channel, owner)
    await save(channel, owner, workflow.id, "regional-enrichment")
    assert [t.id for t in await listed(channel, other) if t.custom] == []
    code, reason, metadata = await refusal(
        stub(channel).CreateWorkflowFromTemplate(
            workflow_pb2.CreateWorkflowFromTemplateRequest(template_id="regional-enrichment"),
            metadata=auth(other),
        )
    )
    # Exactly the answer for an id nobody has: nothing says the owner's exists.
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert metadata == {"template_id": "regional-enrichment"}
    code, reason, _ = await refusal(save(channel, other, workflow.id, "taken-over"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "WORKFLOW_NOT_FOUND")
    assert await stored(database, other) == []
    assert await stored(database, owner) == ["regional-enrichment"]


async def test_professional_may_use_at_least_twenty_templates_and_each_validates(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    usable = await listed(channel, tenant, available_only=True)
    assert len(usable) >= 20
    assert all(t.available and not t.custom for t in usable)
    assert {t.minimum_tier for t in usable} == {tenant_pb2.TIER_FREE, tenant_pb2.TIER_PROFESSIONAL}
    for template in usable:
        report = await stub(channel).ValidateWorkflow(
            workflow_pb2.ValidateWorkflowRequest(workflow=template.workflow), metadata=auth(tenant)
        )
        assert report.valid, (template.id, list(report.errors))
    created = await stub(channel).CreateWorkflowFromTemplate(
        workflow_pb2.CreateWorkflowFromTemplateRequest(template_id="inventory-restock"),
        metadata=auth(tenant),
    )
    assert created.workflow.name == "Inventory restock"


async def test_enterprise_saves_a_workflow_as_a_template_lists_and_uses_it(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow = await create(channel, tenant, definition("Enrichment v1"))
    current = await update_steps(channel, tenant, workflow.id, definition(extra_tools=2))
    saved = await save(channel, tenant, workflow.id, "regional-enrichment", category="data")
    assert (saved.id, saved.name, saved.category) == (
        "regional-enrichment",
        "Regional enrichment",
        "data",
    )
    assert saved.custom and saved.available and saved.minimum_tier == tenant_pb2.TIER_ENTERPRISE
    assert (saved.source_workflow_id, saved.source_version) == (workflow.id, 2)
    assert saved.created_by == "user-1" and saved.create_time.seconds > 0
    assert list(saved.workflow.steps) == list(current.steps)
    first = await save(channel, tenant, workflow.id, "enrichment-first-cut", version=1)
    assert first.source_version == 1
    assert [s.id for s in first.workflow.steps] == [s.id for s in workflow.steps]

    shown = await listed(channel, tenant)
    assert [t.id for t in shown] == [*catalog(), "enrichment-first-cut", "regional-enrichment"]
    assert [t.custom for t in shown].count(True) == 2 and all(t.available for t in shown)
    assert shown[-1] == saved

    created = await stub(channel).CreateWorkflowFromTemplate(
        workflow_pb2.CreateWorkflowFromTemplateRequest(
            template_id="regional-enrichment", name="EU enrichment"
        ),
        metadata=auth(tenant),
    )
    assert created.workflow.id != workflow.id and created.workflow.name == "EU enrichment"
    assert list(created.workflow.steps) == list(current.steps)
    assert created.workflow.status == workflow_pb2.WORKFLOW_STATUS_DRAFT
    assert await custom_templates_used(channel, tenant) == 2


@pytest.mark.parametrize("tier", ["free", "professional"])
async def test_plans_without_custom_templates_are_refused_and_nothing_is_stored(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant, tier: str
) -> None:
    tenant = await new_tenant(tier)
    workflow = await create(channel, tenant)
    code, reason, metadata = await refusal(save(channel, tenant, workflow.id, "my-enrichment"))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TIER_RESTRICTION")
    assert metadata["tier"] == tier
    assert (metadata["feature"], metadata["required"]) == ("templates", "all_and_custom")
    assert await stored(database, tenant) == []
    assert [t.id for t in await listed(channel, tenant) if t.custom] == []
    assert await custom_templates_used(channel, tenant) == 0


async def test_taken_or_malformed_ids_are_refused_and_store_nothing_more(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow = await create(channel, tenant)
    await save(channel, tenant, workflow.id, "my-enrichment")
    code, reason, metadata = await refusal(save(channel, tenant, workflow.id, "my-enrichment"))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "INVALID_INPUT")
    assert metadata == {"template_id": "my-enrichment", "taken_by": "tenant"}
    code, _, metadata = await refusal(save(channel, tenant, workflow.id, "customer-enrichment"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and metadata["taken_by"] == "catalog"
    malformed: list[tuple[str, dict[str, str]]] = [
        ("My_Enrichment", {}),
        ("x" * 64, {}),
        ("fine-id", {"name": " "}),
        ("fine-id", {"category": "Sales Ops"}),
        ("fine-id", {"description": "d" * 2001}),
    ]
    for template_id, fields in malformed:
        code, reason, _ = await refusal(save(channel, tenant, workflow.id, template_id, **fields))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT"), fields
    code, reason, _ = await refusal(save(channel, tenant, workflow.id, "fine-id", version=9))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "WORKFLOW_NOT_FOUND")
    assert await stored(database, tenant) == ["my-enrichment"]
    assert await custom_templates_used(channel, tenant) == 1


async def test_concurrent_saves_of_one_id_store_it_once(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow = await create(channel, tenant)

    async def attempt() -> grpc.StatusCode | None:
        try:
            await save(channel, tenant, workflow.id, "raced")
        except grpc.RpcError as error:
            return error_info(error)[0]
        return None

    outcomes = await asyncio.gather(*(attempt() for _ in range(6)))
    assert outcomes.count(None) == 1
    assert set(outcomes) - {None} == {grpc.StatusCode.ALREADY_EXISTS}
    assert await stored(database, tenant) == ["raced"]
    assert await custom_templates_used(channel, tenant) == 1


async def test_a_tenant_keeps_at_most_its_plans_custom_templates(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise", {"max_custom_templates": 2})
    workflow = await create(channel, tenant)
    for template_id in ("first", "second"):
        await save(channel, tenant, workflow.id, template_id)
    code, reason, metadata = await refusal(save(channel, tenant, workflow.id, "third"))
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TIER_RESTRICTION")
    assert (metadata["quota"], metadata["limit"]) == ("max_custom_templates", "2")
    assert await stored(database, tenant) == ["first", "second"]


async def test_pages_run_from_the_catalog_into_the_tenants_own_templates(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow = await create(channel, tenant)
    for template_id in ("zeta", "alpha", "mid"):
        await save(channel, tenant, workflow.id, template_id)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub(channel).ListTemplates(
            workflow_pb2.ListTemplatesRequest(page_size=4, page_token=token),
            metadata=auth(tenant),
        )
        assert 1 <= len(page.templates) <= 4
        seen += [t.id for t in page.templates]
        token = page.next_page_token
        if not token:
            break
    assert seen == [*catalog(), "alpha", "mid", "zeta"]


async def test_a_downgraded_tenant_sees_its_templates_but_cannot_use_them(
    channel: aio.Channel, admin_database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow = await create(channel, tenant)
    await save(channel, tenant, workflow.id, "kept")
    async with admin_database.transaction(None) as session:
        await tenants.set_tier(session, tenant, "professional")
    [kept] = [t for t in await listed(channel, tenant) if t.custom]
    assert (kept.id, kept.available) == ("kept", False)
    assert "kept" not in {t.id for t in await listed(channel, tenant, available_only=True)}
    code, reason, metadata = await refusal(
        stub(channel).CreateWorkflowFromTemplate(
            workflow_pb2.CreateWorkflowFromTemplateRequest(template_id="kept"),
            metadata=auth(tenant),
        )
    )
    assert (code, reason, metadata["feature"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "TIER_RESTRICTION",
        "templates",
    )
