"""Every REST route's refusals are seed 004's error body, with the HTTP status of their gRPC code;
another tenant's id answers exactly as a missing one."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.routes import build_routes
from tests.conftest import NewTenant
from tests.gateway.calls import active, error_of, finished, ok, started, unique
from tests.gateway.conftest import Gateway

MISSING = "{missing}"


@dataclass(frozen=True)
class Refusal:
    """A request a route refuses: `{missing}` in the path stands for an id nobody has."""

    path: str
    status: int
    code: str
    tier: str = "free"
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    credentials: bool = True
    roles: tuple[str, ...] = ()
    violation: str | None = None  # the field the one violation names, if any


REFUSALS: dict[tuple[str, str], Refusal] = {
    ("POST", "/api/workflows"): Refusal(
        "/api/workflows", 400, "invalid_workflow_definition", body={"name": "No steps"}
    ),
    ("GET", "/api/workflows/{id}"): Refusal("/api/workflows/{missing}", 404, "workflow_not_found"),
    ("GET", "/api/workflows"): Refusal(
        "/api/workflows", 400, "invalid_input", params={"status": "LIVE"}, violation="status"
    ),
    ("PATCH", "/api/workflows/{workflow.id}"): Refusal(
        "/api/workflows/{missing}", 404, "workflow_not_found", body={"name": "x"}
    ),
    ("DELETE", "/api/workflows/{id}"): Refusal(
        "/api/workflows/{missing}",
        403,
        "permission_denied",  # an admin's call
    ),
    ("POST", "/api/workflows/{id}:activate"): Refusal(
        "/api/workflows/{missing}:activate", 404, "workflow_not_found"
    ),
    ("POST", "/api/workflows/{id}:archive"): Refusal(
        "/api/workflows/{missing}:archive", 404, "workflow_not_found"
    ),
    ("POST", "/api/workflows:validate"): Refusal(
        "/api/workflows:validate", 400, "invalid_input", body={"steps": {}}, violation="steps"
    ),
    ("POST", "/api/workflows/validate-step"): Refusal(
        "/api/workflows/validate-step",
        400,
        "invalid_input",
        body={"step": {"id": "x", "type": 7}},
        violation="step.type",
    ),
    ("GET", "/api/step-types"): Refusal(
        "/api/step-types", 401, "unauthenticated", credentials=False
    ),
    ("GET", "/api/workflows/{workflow_id}/versions"): Refusal(
        "/api/workflows/{missing}/versions", 403, "tier_restriction"
    ),
    ("GET", "/api/workflows/{workflow_id}/versions/{version}"): Refusal(
        "/api/workflows/{missing}/versions/latest", 400, "invalid_input", violation="version"
    ),
    ("POST", "/api/workflows/{workflow_id}:revert"): Refusal(
        "/api/workflows/{missing}:revert", 404, "workflow_not_found", "professional", {"version": 1}
    ),
    ("GET", "/api/workflows/{workflow_id}/versions:diff"): Refusal(
        "/api/workflows/{missing}/versions:diff", 403, "tier_restriction", "professional"
    ),
    ("POST", "/api/workflows/{workflow_id}:publish"): Refusal(
        "/api/workflows/{missing}:publish",
        404,
        "workflow_not_found",
        "enterprise",
        roles=("admin",),
    ),
    ("GET", "/api/templates"): Refusal(
        "/api/templates", 400, "invalid_input", params={"page_token": "forged"}
    ),
    ("POST", "/api/templates/{template_id}:use"): Refusal(
        "/api/templates/{missing}:use", 400, "invalid_input", violation="template_id"
    ),
    ("POST", "/api/workflows/{workflow_id}:saveAsTemplate"): Refusal(
        "/api/workflows/{missing}:saveAsTemplate",
        403,
        "tier_restriction",
        "professional",
        {"template_id": "mine", "name": "Mine", "category": "testing"},
    ),
    ("GET", "/api/workflows/{workflow_id}/stats"): Refusal(
        "/api/workflows/{missing}/stats", 404, "workflow_not_found"
    ),
    ("POST", "/api/workflows/{workflow_id}/test-execute"): Refusal(
        "/api/workflows/{missing}/test-execute", 404, "workflow_not_found", body={"input": {}}
    ),
    ("POST", "/api/workflows:testExecute"): Refusal(
        "/api/workflows:testExecute",
        400,
        "invalid_input",
        body={"input": {}, "wait_seconds": 500},
        violation="wait_seconds",
    ),
    ("POST", "/api/webhooks:complete"): Refusal(
        "/api/webhooks:complete", 400, "invalid_input", body={"token": "x"}, violation="token"
    ),
    ("GET", "/api/workflows/{workflow_id}/diagram"): Refusal(
        "/api/workflows/{missing}/diagram", 404, "workflow_not_found"
    ),
    ("POST", "/api/workflows/{workflow_id}/executions"): Refusal(
        "/api/workflows/{missing}/executions", 404, "workflow_not_found", body={"input": {}}
    ),
    ("GET", "/api/executions/{execution_id}"): Refusal(
        "/api/executions/{missing}", 404, "execution_not_found"
    ),
    ("GET", "/api/executions"): Refusal(
        "/api/executions",
        400,
        "invalid_input",
        params={"created_after": "yesterday"},
        violation="created_after",
    ),
    ("GET", "/api/workflows/{workflow_id}/executions"): Refusal(
        "/api/workflows/{missing}/executions",
        400,
        "invalid_input",
        params={"statuses": "DONE"},
        violation="statuses",
    ),
    ("POST", "/api/executions/{execution_id}:cancel"): Refusal(
        "/api/executions/{missing}:cancel", 404, "execution_not_found"
    ),
    ("POST", "/api/executions/{execution_id}:retry"): Refusal(
        "/api/executions/{missing}:retry", 404, "execution_not_found"
    ),
    ("POST", "/api/executions/{execution_id}:rerun"): Refusal(
        "/api/executions/{missing}:rerun", 404, "execution_not_found", body={"from_step": "x"}
    ),
    ("GET", "/api/executions/{execution_id}:watch"): Refusal(
        "/api/executions/{missing}:watch", 404, "execution_not_found"
    ),
    ("GET", "/api/events:subscribe"): Refusal(
        "/api/events:subscribe", 403, "permission_denied", params={"topics": "all_executions"}
    ),
    ("GET", "/api/tenant"): Refusal("/api/tenant", 401, "unauthenticated", credentials=False),
    ("GET", "/api/notifications"): Refusal(
        "/api/notifications", 400, "invalid_input", params={"unread_only": "maybe"}
    ),
    ("POST", "/api/notifications:markRead"): Refusal(
        "/api/notifications:markRead", 400, "invalid_input", body={"ids": ["first"]}
    ),
    ("GET", "/api/notifications/settings"): Refusal(
        "/api/notifications/settings", 401, "unauthenticated", credentials=False
    ),
    ("PATCH", "/api/notifications/settings"): Refusal(
        "/api/notifications/settings",
        400,
        "invalid_input",
        body={"on_completed": "yes"},
        violation="on_completed",
    ),
}


def test_every_route_has_a_refusal_case() -> None:
    assert set(REFUSALS) == {(r.verb, r.template) for r in build_routes()}


@pytest.mark.parametrize("route", sorted(REFUSALS), ids=" ".join)
async def test_route_refuses_with_the_seeds_error_body(
    gateway: Gateway, new_tenant: NewTenant, route: tuple[str, str]
) -> None:
    refusal = REFUSALS[route]
    tenant = await new_tenant(refusal.tier)
    path = refusal.path.replace(MISSING, str(uuid.uuid4()))
    response = await gateway.call(
        route[0],
        path,
        tenant if refusal.credentials else None,
        roles=list(refusal.roles),
        json=refusal.body,
        params=refusal.params,
    )
    error = error_of(response, refusal.status, refusal.code)
    if refusal.violation is not None:
        fields = [v["field"] for v in error["details"]["field_violations"]]
        assert fields == [refusal.violation], error


@dataclass
class Owned:
    """What one tenant owns, whose ids another tenant then tries."""

    tenant: str
    ids: dict[str, str]


async def owned_resources(gateway: Gateway, tenant: str) -> Owned:
    workflow_id = await active(gateway, tenant)
    path = f"/api/workflows/{workflow_id}"
    ok(
        await gateway.call(
            "PATCH", path, tenant, json={"name": "Hi"}, params={"update_mask": "name"}
        )
    )
    execution_id = await started(gateway, tenant, workflow_id, name="Ada")
    await finished(gateway, tenant, execution_id)
    template = {"template_id": unique("owned"), "name": "Owned", "category": "testing"}
    ok(await gateway.call("POST", f"{path}:saveAsTemplate", tenant, json=template))
    return Owned(
        tenant,
        {
            "id": workflow_id,
            "workflow.id": workflow_id,
            "workflow_id": workflow_id,
            "execution_id": execution_id,
            "template_id": template["template_id"],
            "version": "1",
        },
    )


BODIES: dict[str, Any] = {
    "PATCH /api/workflows/{workflow.id}": {"name": "Taken over"},
    "POST /api/workflows/{workflow_id}:revert": {"version": 1},
    "POST /api/workflows/{workflow_id}:saveAsTemplate": {
        "template_id": "copied",
        "name": "Copied",
        "category": "testing",
    },
    "POST /api/workflows/{workflow_id}/executions": {"input": {"name": "Eve"}},
    "POST /api/executions/{execution_id}:rerun": {"from_step": "greet"},
    "POST /api/templates/{template_id}:use": {"name": "Copied"},
}
PARAMS: dict[str, dict[str, str]] = {
    "GET /api/workflows/{workflow_id}/versions:diff": {"from_version": "1", "to_version": "2"},
}
WITH_IDS = sorted(f"{r.verb} {r.template}" for r in build_routes() if r.variables)


def masked(body: dict[str, Any], ids: list[str]) -> str:
    """The error without what differs between two calls: the ids tried and the request id."""
    error = {key: value for key, value in body["error"].items() if key != "request_id"}
    text = repr(error)
    for value in sorted(ids, key=len, reverse=True):
        text = text.replace(value, "<id>")
    return text


@pytest.mark.parametrize("route", WITH_IDS)
async def test_another_tenants_id_answers_exactly_as_a_missing_one(
    gateway: Gateway, new_tenant: NewTenant, route: str
) -> None:
    owner = await owned_resources(gateway, await new_tenant("enterprise"))
    intruder = await new_tenant("enterprise")
    verb, template = route.split(" ", 1)
    missing = {name: str(uuid.uuid4()) for name in owner.ids}
    missing["template_id"] = unique("missing")
    missing["version"] = "1"

    async def attempt(ids: dict[str, str]) -> Any:
        path = re.sub(r"\{([^}]+)\}", lambda m: ids[m.group(1)], template)
        return await gateway.call(
            verb,
            path,
            intruder,
            roles=["admin"],
            json=BODIES.get(route, {}) if verb in ("POST", "PATCH") else None,
            params=PARAMS.get(route),
        )

    theirs, nobodys = await attempt(owner.ids), await attempt(missing)
    assert theirs.status_code == nobodys.status_code, (theirs.text, nobodys.text)
    if verb == "GET" and template.endswith("/executions"):
        assert ok(theirs) == ok(nobodys) == {"executions": [], "next_page_token": ""}
        return
    assert theirs.status_code in (400, 404), theirs.text  # a missing template id is a bad value
    ids = [v for v in (*owner.ids.values(), *missing.values()) if len(v) > 1]
    assert masked(theirs.json(), ids) == masked(nobodys.json(), ids)
    still = await gateway.call("GET", f"/api/workflows/{owner.ids['id']}", owner.tenant)
    assert ok(still)["name"] == "Hi"  # and the owner's workflow is untouched
