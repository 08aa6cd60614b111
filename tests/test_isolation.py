"""Cross-tenant isolation for every RPC of the `wfe.v1` API.

Each RPC has a case: tenant A owns something, tenant B's token asks for it. The
coverage test fails when an RPC is added without a case here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc import aio

from engine.callbacks import issue
from service.server import SERVICE_NAMES
from tests.conftest import NewTenant, auth, error_info, token
from tests.execution_helpers import (
    active_workflow,
    executions,
    start,
    struct,
    three_steps,
    wait_until,
)
from tests.stream_helpers import next_event, subscribe, watch
from tests.workflow_helpers import create, definition, message, stub, update_steps
from wfe.v1 import (
    event_pb2,
    execution_pb2,
    notification_pb2,
    notification_pb2_grpc,
    tenant_pb2,
    tenant_pb2_grpc,
    workflow_pb2,
)

Case = Callable[[aio.Channel, str, str], Awaitable[None]]


async def get_tenant_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    own = await stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=auth(tenant_b))
    assert own.tenant.id == tenant_b
    # The tenant is chosen by the header, so B's only way at A is to name it there.
    with pytest.raises(grpc.RpcError) as caught:
        await stub.GetTenant(
            tenant_pb2.GetTenantRequest(),
            metadata=(("authorization", f"Bearer {token([tenant_b])}"), ("x-tenant-id", tenant_a)),
        )
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert metadata == {"tenant_id": tenant_a}


async def assert_not_found(call: Awaitable[object]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await call
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "WORKFLOW_NOT_FOUND")


async def owned_workflow(channel: aio.Channel, tenant: str) -> workflow_pb2.Workflow:
    """A workflow of `tenant` with two versions, the second published."""
    created = await create(channel, tenant)
    await update_steps(channel, tenant, created.id, definition(extra_tools=1))
    await stub(channel).PublishWorkflow(
        workflow_pb2.PublishWorkflowRequest(workflow_id=created.id, release_notes="v2"),
        metadata=auth(tenant, roles=["admin"]),
    )
    return created


def by_id_case(method: str, build: Callable[[str], object]) -> Case:
    """B names A's workflow id: it answers NOT_FOUND, exactly as for a missing one.

    B calls as an admin of B, so that no role refusal can stand in for the isolation.
    """

    async def case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
        owned = await owned_workflow(channel, tenant_a)
        call = getattr(stub(channel), method)
        as_b = auth(tenant_b, roles=["admin"])
        await assert_not_found(call(build(owned.id), metadata=as_b))
        await assert_not_found(call(build(str(uuid.uuid4())), metadata=as_b))

    return case


def update_request(workflow_id: str) -> workflow_pb2.UpdateWorkflowRequest:
    proposed = message(definition("taken over"))
    proposed.id = workflow_id
    return workflow_pb2.UpdateWorkflowRequest(workflow=proposed)


async def create_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    request_id = str(uuid.uuid4())
    owned = await create(channel, tenant_a, request_id=request_id)
    # The same idempotency key in another tenant is another tenant's key.
    mine = await create(channel, tenant_b, definition("B's"), request_id=request_id)
    assert mine.id != owned.id and mine.name == "B's"


async def create_from_template_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    request_id = str(uuid.uuid4())
    request = workflow_pb2.CreateWorkflowFromTemplateRequest(
        template_id="customer-enrichment", request_id=request_id
    )
    owned = await stub(channel).CreateWorkflowFromTemplate(request, metadata=auth(tenant_a))
    mine = await stub(channel).CreateWorkflowFromTemplate(request, metadata=auth(tenant_b))
    assert mine.workflow.id != owned.workflow.id


async def save_as_template_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    """B can neither save A's workflow nor see or use A's template; B's ids are its own."""
    owned = await owned_workflow(channel, tenant_a)
    request = workflow_pb2.SaveAsTemplateRequest(
        workflow_id=owned.id, template_id="shared-name", name="A's", category="sales"
    )
    await stub(channel).SaveAsTemplate(request, metadata=auth(tenant_a))
    await assert_not_found(
        stub(channel).SaveAsTemplate(request, metadata=auth(tenant_b, roles=["admin"]))
    )
    listed = await stub(channel).ListTemplates(
        workflow_pb2.ListTemplatesRequest(page_size=200), metadata=auth(tenant_b)
    )
    assert [t.id for t in listed.templates if t.custom] == []
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).CreateWorkflowFromTemplate(
            workflow_pb2.CreateWorkflowFromTemplateRequest(template_id="shared-name"),
            metadata=auth(tenant_b),
        )
    assert error_info(caught.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_INPUT",
        {"template_id": "shared-name"},
    )
    mine = await create(channel, tenant_b, definition("B's"))
    request.workflow_id, request.name = mine.id, "B's"
    saved = await stub(channel).SaveAsTemplate(request, metadata=auth(tenant_b))
    assert (saved.template.source_workflow_id, saved.template.workflow.name) == (mine.id, "B's")


async def list_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    await owned_workflow(channel, tenant_a)
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant_b)
    )
    assert list(listed.workflows) == []


def header_case(method: str, request: object) -> Case:
    """Calls that read no stored rows: B's token cannot act as A either."""

    async def case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
        call = getattr(stub(channel), method)
        await call(request, metadata=auth(tenant_b))
        with pytest.raises(grpc.RpcError) as caught:
            await call(
                request,
                metadata=(
                    ("authorization", f"Bearer {token([tenant_b])}"),
                    ("x-tenant-id", tenant_a),
                ),
            )
        assert error_info(caught.value)[:2] == (
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )

    return case


async def finished_execution(channel: aio.Channel, tenant: str) -> execution_pb2.Execution:
    workflow_id = await active_workflow(channel, tenant, three_steps())
    started = await start(channel, tenant, workflow_id, {"name": "A"})
    return await wait_until(channel, tenant, started.id)


def execution_case(method: str, build: Callable[[str], object]) -> Case:
    """B names A's execution id: NOT_FOUND, exactly as for a missing one; A's is untouched."""

    async def case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
        owned = await finished_execution(channel, tenant_a)
        call = getattr(executions(channel), method)
        for execution_id in (owned.id, str(uuid.uuid4())):
            with pytest.raises(grpc.RpcError) as caught:
                await call(build(execution_id), metadata=auth(tenant_b))
            code, reason, _ = error_info(caught.value)
            assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "EXECUTION_NOT_FOUND")
        again = await executions(channel).GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=owned.id), metadata=auth(tenant_a)
        )
        assert again.execution == owned

    return case


async def trial_run_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    """B test-runs A's workflow id: NOT_FOUND, as for a missing one, and nothing runs."""
    owned = await owned_workflow(channel, tenant_a)
    as_b = auth(tenant_b, roles=["admin"])
    for workflow_id in (owned.id, str(uuid.uuid4())):
        request = execution_pb2.TestExecuteRequest(workflow_id=workflow_id, debug_mode=True)
        await assert_not_found(executions(channel).TestExecute(request, metadata=as_b))
    listed = await executions(channel).ListExecutions(
        execution_pb2.ListExecutionsRequest(), metadata=auth(tenant_a)
    )
    assert list(listed.executions) == []


async def complete_webhook_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    """B holds a well-formed token naming A's execution: NOT_FOUND, as for a missing one."""
    owned = await finished_execution(channel, tenant_a)
    for execution_id in (owned.id, str(uuid.uuid4())):
        token = issue(execution_id, "shape", 1).render()
        with pytest.raises(grpc.RpcError) as caught:
            await executions(channel).CompleteWebhook(
                execution_pb2.CompleteWebhookRequest(token=token), metadata=auth(tenant_b)
            )
        code, reason, _ = error_info(caught.value)
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "EXECUTION_NOT_FOUND")
    again = await executions(channel).GetExecution(
        execution_pb2.GetExecutionRequest(execution_id=owned.id), metadata=auth(tenant_a)
    )
    assert again.execution == owned


async def start_execution_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    workflow_id = await active_workflow(channel, tenant_a, three_steps())
    await assert_not_found(start(channel, tenant_b, workflow_id))
    # The same idempotency key in another tenant is another tenant's key.
    request_id = str(uuid.uuid4())
    owned = await start(channel, tenant_a, workflow_id, request_id=request_id)
    mine = await start(
        channel,
        tenant_b,
        await active_workflow(channel, tenant_b, three_steps()),
        request_id=request_id,
    )
    assert mine.id != owned.id


async def list_executions_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    owned = await finished_execution(channel, tenant_a)
    for request in (
        execution_pb2.ListExecutionsRequest(),
        execution_pb2.ListExecutionsRequest(workflow_id=owned.workflow_id),
    ):
        listed = await executions(channel).ListExecutions(request, metadata=auth(tenant_b))
        assert list(listed.executions) == []


async def watch_execution_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    """B watching A's execution: NOT_FOUND, as for a missing one; A sees its own."""
    owned = await finished_execution(channel, tenant_a)
    for execution_id in (owned.id, str(uuid.uuid4())):
        with pytest.raises(grpc.RpcError) as caught:
            await watch(channel, tenant_b, execution_id)
        code, reason, _ = error_info(caught.value)
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "EXECUTION_NOT_FOUND")
    [snapshot] = await watch(channel, tenant_a, owned.id)
    assert snapshot.snapshot == owned


async def subscribe_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    """B's topics naming A's ids get what ids that do not exist get: none of A's events.

    B replays from the log's start; B's own change, made after all of A's, is the first
    event B receives, so no event of A came before it.
    """
    owned = await finished_execution(channel, tenant_a)
    streams = [
        subscribe(channel, tenant_b, topics, after=0, roles=["admin"])
        for topics in (
            [f"workflow:{owned.workflow_id}", f"execution:{owned.id}", "all_workflows"],
            [f"workflow:{uuid.uuid4()}", f"execution:{uuid.uuid4()}", "all_workflows"],
            ["all_workflows", "all_executions"],
        )
    ]
    await finished_execution(channel, tenant_a)  # and more of A, live
    fence = await create(channel, tenant_b, definition("B's"))
    for stream in streams:
        first = await next_event(stream)
        assert (first.workflow_id, first.type) == (fence.id, "workflow_updated")
        stream.cancel()


def notifications(channel: aio.Channel) -> notification_pb2_grpc.NotificationServiceStub:
    return notification_pb2_grpc.NotificationServiceStub(channel)


def opt_in(on: bool) -> notification_pb2.UpdateNotificationSettingsRequest:
    settings = notification_pb2.NotificationSettings(on_completed=on)
    return notification_pb2.UpdateNotificationSettingsRequest(settings=settings)


async def notified(channel: aio.Channel, tenant: str) -> list[event_pb2.Notification]:
    """The caller's notifications once A's completed execution has made one (the same user
    name, `user-1`, is every test token's subject, in A and in B alike)."""
    await notifications(channel).UpdateNotificationSettings(opt_in(True), metadata=auth(tenant))
    await finished_execution(channel, tenant)
    async with asyncio.timeout(30):
        while True:
            found = await notifications(channel).ListNotifications(
                notification_pb2.ListNotificationsRequest(), metadata=auth(tenant)
            )
            if found.notifications:
                return list(found.notifications)
            await asyncio.sleep(0.05)


async def list_notifications_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    await notified(channel, tenant_a)
    seen = await notifications(channel).ListNotifications(
        notification_pb2.ListNotificationsRequest(), metadata=auth(tenant_b)
    )
    assert (list(seen.notifications), seen.unread_count) == ([], 0)


async def mark_notifications_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    """B marking A's ids, or all of its own, leaves A's notification unread."""
    [owned] = await notified(channel, tenant_a)
    mark = notifications(channel).MarkNotificationsRead
    for request in (
        notification_pb2.MarkNotificationsReadRequest(ids=[owned.id]),
        notification_pb2.MarkNotificationsReadRequest(all=True),
    ):
        assert (await mark(request, metadata=auth(tenant_b))).marked == 0
    again = await notifications(channel).ListNotifications(
        notification_pb2.ListNotificationsRequest(), metadata=auth(tenant_a)
    )
    assert [(n.id, n.HasField("read_time")) for n in again.notifications] == [(owned.id, False)]


async def notification_settings_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    """The same user name in B has settings of its own: B's change leaves A's as they were."""
    service = notifications(channel)
    await service.UpdateNotificationSettings(opt_in(True), metadata=auth(tenant_a))
    await service.UpdateNotificationSettings(opt_in(False), metadata=auth(tenant_b))
    request = notification_pb2.GetNotificationSettingsRequest()
    assert (
        await service.GetNotificationSettings(request, metadata=auth(tenant_a))
    ).settings.on_completed
    assert not (
        await service.GetNotificationSettings(request, metadata=auth(tenant_b))
    ).settings.on_completed


EXECUTION = "/wfe.v1.ExecutionService/"
WORKFLOW = "/wfe.v1.WorkflowService/"
NOTIFICATION = "/wfe.v1.NotificationService/"
CASES: dict[str, Case] = {
    "/wfe.v1.TenantService/GetTenant": get_tenant_case,
    WORKFLOW + "CreateWorkflow": create_case,
    WORKFLOW + "CreateWorkflowFromTemplate": create_from_template_case,
    WORKFLOW + "SaveAsTemplate": save_as_template_case,
    WORKFLOW + "ListWorkflows": list_case,
    WORKFLOW + "GetWorkflow": by_id_case(
        "GetWorkflow", lambda i: workflow_pb2.GetWorkflowRequest(id=i)
    ),
    WORKFLOW + "UpdateWorkflow": by_id_case("UpdateWorkflow", update_request),
    WORKFLOW + "DeleteWorkflow": by_id_case(
        "DeleteWorkflow", lambda i: workflow_pb2.DeleteWorkflowRequest(id=i)
    ),
    WORKFLOW + "ActivateWorkflow": by_id_case(
        "ActivateWorkflow", lambda i: workflow_pb2.ActivateWorkflowRequest(id=i)
    ),
    WORKFLOW + "ArchiveWorkflow": by_id_case(
        "ArchiveWorkflow", lambda i: workflow_pb2.ArchiveWorkflowRequest(id=i)
    ),
    WORKFLOW + "ListWorkflowVersions": by_id_case(
        "ListWorkflowVersions", lambda i: workflow_pb2.ListWorkflowVersionsRequest(workflow_id=i)
    ),
    WORKFLOW + "GetWorkflowVersion": by_id_case(
        "GetWorkflowVersion",
        lambda i: workflow_pb2.GetWorkflowVersionRequest(workflow_id=i, version=1),
    ),
    WORKFLOW + "RevertWorkflow": by_id_case(
        "RevertWorkflow", lambda i: workflow_pb2.RevertWorkflowRequest(workflow_id=i, version=1)
    ),
    WORKFLOW + "DiffWorkflowVersions": by_id_case(
        "DiffWorkflowVersions",
        lambda i: workflow_pb2.DiffWorkflowVersionsRequest(
            workflow_id=i, from_version=1, to_version=2
        ),
    ),
    WORKFLOW + "PublishWorkflow": by_id_case(
        "PublishWorkflow", lambda i: workflow_pb2.PublishWorkflowRequest(workflow_id=i, version=1)
    ),
    WORKFLOW + "GetWorkflowDiagram": by_id_case(
        "GetWorkflowDiagram", lambda i: workflow_pb2.GetWorkflowDiagramRequest(workflow_id=i)
    ),
    WORKFLOW + "GetWorkflowStats": by_id_case(
        "GetWorkflowStats", lambda i: workflow_pb2.GetWorkflowStatsRequest(workflow_id=i)
    ),
    WORKFLOW + "ValidateWorkflow": header_case(
        "ValidateWorkflow", workflow_pb2.ValidateWorkflowRequest(workflow=message(definition()))
    ),
    WORKFLOW + "ValidateStep": header_case(
        "ValidateStep",
        workflow_pb2.ValidateStepRequest(step=message(definition()).steps[1]),
    ),
    WORKFLOW + "ListStepTypes": header_case("ListStepTypes", workflow_pb2.ListStepTypesRequest()),
    WORKFLOW + "ListTemplates": header_case("ListTemplates", workflow_pb2.ListTemplatesRequest()),
    EXECUTION + "StartExecution": start_execution_case,
    EXECUTION + "ListExecutions": list_executions_case,
    EXECUTION + "GetExecution": execution_case(
        "GetExecution", lambda i: execution_pb2.GetExecutionRequest(execution_id=i)
    ),
    EXECUTION + "CancelExecution": execution_case(
        "CancelExecution", lambda i: execution_pb2.CancelExecutionRequest(execution_id=i)
    ),
    EXECUTION + "CompleteWebhook": complete_webhook_case,
    EXECUTION + "TestExecute": trial_run_case,
    EXECUTION + "RetryExecution": execution_case(
        "RetryExecution", lambda i: execution_pb2.RetryExecutionRequest(execution_id=i)
    ),
    EXECUTION + "WatchExecution": watch_execution_case,
    "/wfe.v1.EventService/Subscribe": subscribe_case,
    NOTIFICATION + "ListNotifications": list_notifications_case,
    NOTIFICATION + "MarkNotificationsRead": mark_notifications_case,
    NOTIFICATION + "GetNotificationSettings": notification_settings_case,
    NOTIFICATION + "UpdateNotificationSettings": notification_settings_case,
    EXECUTION + "RerunExecution": execution_case(
        "RerunExecution",
        lambda i: execution_pb2.RerunExecutionRequest(
            execution_id=i, from_step="shape", input_patch=struct({"name": "B"})
        ),
    ),
}


def api_methods() -> set[str]:
    """Every method of every API service the server registers."""
    pool = descriptor_pool.Default()
    return {
        f"/{name}/{method.name}"
        for name in SERVICE_NAMES
        for method in pool.FindServiceByName(name).methods
    }


def test_every_rpc_has_an_isolation_case() -> None:
    assert api_methods() == set(CASES)


@pytest.mark.parametrize("method", sorted(CASES))
async def test_other_tenants_token_never_reaches_the_resource(
    channel: aio.Channel, new_tenant: NewTenant, method: str
) -> None:
    # Both on Enterprise, so no plan refusal can stand in for the isolation being tested.
    await CASES[method](channel, await new_tenant("enterprise"), await new_tenant("enterprise"))
