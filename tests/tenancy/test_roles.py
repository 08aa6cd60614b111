"""Roles as a client sees them: admin-only methods refuse members and change nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc import aio

from foundation.errors import PermissionDenied
from tenancy.context import CallIdentity, TenantId
from tenancy.roles import DEFAULT, POLICY, Role, authorize_topics, required_role
from tests.conftest import NewTenant, auth, error_info
from tests.test_isolation import api_methods
from tests.workflow_helpers import create, definition, stub, update_steps
from wfe.v1 import workflow_pb2

ADMIN = ["admin"]
WORKFLOWS = "/wfe.v1.WorkflowService/"

Call = Callable[[aio.Channel, str, tuple[tuple[str, str], ...]], Awaitable[object]]


def test_every_method_of_the_api_has_a_role() -> None:
    roles = {method: required_role(method) for method in api_methods()}
    assert set(roles.values()) <= set(Role)
    assert {m for m, role in roles.items() if role is not DEFAULT} == set(POLICY)


def test_the_policy_names_only_methods_that_exist() -> None:
    assert set(POLICY) <= api_methods()


async def two_versions(channel: aio.Channel, tenant: str) -> workflow_pb2.Workflow:
    created = await create(channel, tenant)
    await update_steps(channel, tenant, created.id, definition(extra_tools=1))
    return created


async def delete(
    channel: aio.Channel, workflow_id: str, metadata: tuple[tuple[str, str], ...]
) -> object:
    return await stub(channel).DeleteWorkflow(
        workflow_pb2.DeleteWorkflowRequest(id=workflow_id), metadata=metadata
    )


async def publish(
    channel: aio.Channel, workflow_id: str, metadata: tuple[tuple[str, str], ...]
) -> object:
    return await stub(channel).PublishWorkflow(
        workflow_pb2.PublishWorkflowRequest(workflow_id=workflow_id, release_notes="v2"),
        metadata=metadata,
    )


ADMIN_CALLS: dict[str, Call] = {
    WORKFLOWS + "DeleteWorkflow": delete,
    WORKFLOWS + "PublishWorkflow": publish,
}


def test_every_admin_only_method_is_tested() -> None:
    assert {m for m, role in POLICY.items() if role is Role.ADMIN} == set(ADMIN_CALLS)


@pytest.mark.parametrize("method", sorted(ADMIN_CALLS))
async def test_member_is_refused_an_admin_only_method_and_nothing_changes(
    channel: aio.Channel, new_tenant: NewTenant, method: str
) -> None:
    tenant = await new_tenant("enterprise")
    created = await two_versions(channel, tenant)
    for roles in ([], ["viewer", "editor"]):
        with pytest.raises(grpc.RpcError) as caught:
            await ADMIN_CALLS[method](channel, created.id, auth(tenant, roles=roles))
        code, reason, metadata = error_info(caught.value)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
        assert metadata == {"method": method[1:], "role": "admin", "tenant_id": tenant}
    found = await stub(channel).GetWorkflow(
        workflow_pb2.GetWorkflowRequest(id=created.id), metadata=auth(tenant)
    )
    assert (found.workflow.version, found.workflow.published_version) == (2, 0)


@pytest.mark.parametrize("method", sorted(ADMIN_CALLS))
async def test_admin_may_call_an_admin_only_method(
    channel: aio.Channel, new_tenant: NewTenant, method: str
) -> None:
    tenant = await new_tenant("enterprise")
    created = await two_versions(channel, tenant)
    await ADMIN_CALLS[method](channel, created.id, auth(tenant, roles=ADMIN))


async def test_member_may_call_every_other_method(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    created = await two_versions(channel, tenant)
    listed = await stub(channel).ListWorkflowVersions(
        workflow_pb2.ListWorkflowVersionsRequest(workflow_id=created.id), metadata=auth(tenant)
    )
    assert [v.version for v in listed.versions] == [2, 1]


def identity(*roles: str) -> CallIdentity:
    return CallIdentity(TenantId("t-1"), "user-1", frozenset(roles))


def test_tenant_wide_topics_need_an_admin() -> None:
    with pytest.raises(PermissionDenied) as caught:
        authorize_topics(identity("viewer"), ["workflow:w-1", "all_executions"])
    assert caught.value.metadata == {"topic": "all_executions", "role": "admin", "tenant_id": "t-1"}
    authorize_topics(identity(), ["workflow:w-1", "execution:e-1"])
    authorize_topics(identity("admin"), ["all_workflows", "all_executions"])


def test_readme_roles_table_names_every_admin_only_method() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `admin` |"))
    assert all(f"`{method.rsplit('/', 1)[1]}`" in row for method in ADMIN_CALLS)
