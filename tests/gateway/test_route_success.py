"""Every REST route answers its RPC's success over real HTTP, in the JSON a frontend reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from gateway.routes import build_routes
from tests.conftest import NewTenant
from tests.effects_stub import Effects
from tests.execution_helpers import eventually
from tests.gateway.calls import (
    Events,
    active,
    created,
    failing_once,
    finished,
    hello,
    ok,
    read_events,
    started,
    unique,
)
from tests.gateway.conftest import Gateway, headers_for

SEED_VALIDATE_STEP = {
    "step": {
        "id": "decision",
        "type": "condition",
        "name": "Check Enrichment Success",
        "config": {
            "conditions": [
                {"condition": "$.enrich_data.success == true", "next": "output_success"}
            ],
            "default": "output_failure",
        },
    },
    "context": {
        "available_steps": ["input", "lookup", "enrich_data", "output_success", "output_failure"],
        "input_schema": {},
    },
}


@dataclass
class Context:
    gateway: Gateway
    new_tenant: NewTenant
    request: pytest.FixtureRequest

    def effects(self) -> Effects:
        found: Effects = self.request.getfixturevalue("effects")
        return found


Case = Callable[[Context], Awaitable[None]]
CASES: dict[tuple[str, str], Case] = {}


def case(verb: str, template: str) -> Callable[[Case], Case]:
    def register(function: Case) -> Case:
        CASES[(verb, template)] = function
        return function

    return register


@case("POST", "/api/workflows")
async def _create(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow = ok(await c.gateway.call("POST", "/api/workflows", tenant, json=hello()))
    assert workflow["name"] == "Hello" and workflow["status"] == "WORKFLOW_STATUS_DRAFT"
    assert workflow["version"] == "1" and workflow["input_schema"] == hello()["input_schema"]
    assert [s["id"] for s in workflow["steps"]] == ["input", "greet", "done"]


@case("GET", "/api/workflows/{id}")
async def _get(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await created(c.gateway, tenant)
    workflow = ok(await c.gateway.call("GET", f"/api/workflows/{workflow_id}", tenant))
    assert workflow["id"] == workflow_id and workflow["published_version"] == "0"


@case("GET", "/api/workflows")
async def _list(c: Context) -> None:
    tenant = await c.new_tenant()
    wanted = await created(c.gateway, tenant, hello("Alpha"))
    await created(c.gateway, tenant, hello("Beta"))
    params = {"name_prefix": "Al", "status": "WORKFLOW_STATUS_DRAFT", "page_size": "10"}
    page = ok(await c.gateway.call("GET", "/api/workflows", tenant, params=params))
    assert [w["id"] for w in page["workflows"]] == [wanted]
    assert page["next_page_token"] == ""


@case("PATCH", "/api/workflows/{workflow.id}")
async def _update(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}"
    params = {"update_mask": "name,description"}
    body = {"name": "Renamed", "description": "Says hello"}
    workflow = ok(await c.gateway.call("PATCH", path, tenant, json=body, params=params))
    assert (workflow["name"], workflow["description"], workflow["version"]) == (
        "Renamed",
        "Says hello",
        "2",
    )
    assert len(workflow["steps"]) == 3  # not in the mask: kept


@case("DELETE", "/api/workflows/{id}")
async def _delete(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}"
    assert ok(await c.gateway.call("DELETE", path, tenant, roles=["admin"])) == {}
    assert (await c.gateway.call("GET", path, tenant)).status_code == 404


@case("POST", "/api/workflows/{id}:activate")
async def _activate(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}:activate"
    assert ok(await c.gateway.call("POST", path, tenant))["status"] == "WORKFLOW_STATUS_ACTIVE"


@case("POST", "/api/workflows/{id}:archive")
async def _archive(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await active(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}:archive"
    assert ok(await c.gateway.call("POST", path, tenant))["status"] == "WORKFLOW_STATUS_ARCHIVED"


@case("POST", "/api/workflows:validate")
async def _validate(c: Context) -> None:
    tenant = await c.new_tenant()
    report = ok(await c.gateway.call("POST", "/api/workflows:validate", tenant, json=hello()))
    assert report == {"valid": True, "errors": [], "warnings": []}


@case("POST", "/api/workflows/validate-step")
async def _validate_step(c: Context) -> None:
    tenant = await c.new_tenant()
    path = "/api/workflows/validate-step"
    report = ok(await c.gateway.call("POST", path, tenant, json=SEED_VALIDATE_STEP))
    assert report["valid"] is True and report["errors"] == []
    assert [w["code"] for w in report["warnings"]] == ["expression_simplification"]
    assert "$.enrich_data.success" in report["warnings"][0]["message"]


@case("GET", "/api/step-types")
async def _step_types(c: Context) -> None:
    tenant = await c.new_tenant()
    listed = ok(await c.gateway.call("GET", "/api/step-types", tenant))
    kinds = {t["type"]: t for t in listed["step_types"]}
    assert kinds["input"]["available"] is True and kinds["loop"]["available"] is False
    assert "transform" in {tool["name"] for tool in listed["tools"]}


@case("GET", "/api/workflows/{workflow_id}/versions")
async def _versions(c: Context) -> None:
    tenant = await c.new_tenant("professional")
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}/versions"
    listed = ok(await c.gateway.call("GET", path, tenant))
    assert [v["version"] for v in listed["versions"]] == ["1"]


@case("GET", "/api/workflows/{workflow_id}/versions/{version}")
async def _version(c: Context) -> None:
    tenant = await c.new_tenant("professional")
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}/versions/1"
    version = ok(await c.gateway.call("GET", path, tenant))
    assert (version["workflow_id"], version["version"], version["name"]) == (
        workflow_id,
        "1",
        "Hello",
    )


async def _two_versions(c: Context, tier: str) -> tuple[str, str]:
    tenant = await c.new_tenant(tier)
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}"
    params = {"update_mask": "name"}
    ok(await c.gateway.call("PATCH", path, tenant, json={"name": "Hi"}, params=params))
    return tenant, workflow_id


@case("POST", "/api/workflows/{workflow_id}:revert")
async def _revert(c: Context) -> None:
    tenant, workflow_id = await _two_versions(c, "professional")
    path = f"/api/workflows/{workflow_id}:revert"
    workflow = ok(await c.gateway.call("POST", path, tenant, json={"version": 1}))
    assert (workflow["name"], workflow["version"]) == ("Hello", "3")


@case("GET", "/api/workflows/{workflow_id}/versions:diff")
async def _diff(c: Context) -> None:
    tenant, workflow_id = await _two_versions(c, "enterprise")
    path = f"/api/workflows/{workflow_id}/versions:diff"
    params = {"from_version": "1", "to_version": "2"}
    diff = ok(await c.gateway.call("GET", path, tenant, params=params))
    assert diff["changed_fields"] == [{"field": "name", "before": "Hello", "after": "Hi"}]
    assert diff["added_steps"] == diff["removed_steps"] == diff["changed_steps"] == []


@case("POST", "/api/workflows/{workflow_id}:publish")
async def _publish(c: Context) -> None:
    tenant = await c.new_tenant("enterprise")
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}:publish"
    body = {"release_notes": "First release"}
    version = ok(await c.gateway.call("POST", path, tenant, json=body, roles=["admin"]))
    assert (version["version"], version["release_notes"]) == ("1", "First release")


@case("GET", "/api/templates")
async def _templates(c: Context) -> None:
    tenant = await c.new_tenant()
    params = {"available_only": "true"}
    listed = ok(await c.gateway.call("GET", "/api/templates", tenant, params=params))
    assert len(listed["templates"]) == 5
    assert all(t["available"] and not t["custom"] for t in listed["templates"])


@case("POST", "/api/templates/{template_id}:use")
async def _use_template(c: Context) -> None:
    tenant = await c.new_tenant()
    listed = ok(await c.gateway.call("GET", "/api/templates", tenant))
    template_id = listed["templates"][0]["id"]
    path = f"/api/templates/{template_id}:use"
    workflow = ok(await c.gateway.call("POST", path, tenant, json={"name": "From a template"}))
    assert (workflow["name"], workflow["status"]) == ("From a template", "WORKFLOW_STATUS_DRAFT")


@case("POST", "/api/workflows/{workflow_id}:saveAsTemplate")
async def _save_as_template(c: Context) -> None:
    tenant = await c.new_tenant("enterprise")
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}:saveAsTemplate"
    body = {"template_id": unique("greeter"), "name": "Greeter", "category": "testing"}
    template = ok(await c.gateway.call("POST", path, tenant, json=body))
    assert (template["id"], template["custom"], template["source_workflow_id"]) == (
        body["template_id"],
        True,
        workflow_id,
    )


@case("GET", "/api/workflows/{workflow_id}/diagram")
async def _diagram(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await created(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}/diagram"
    diagram = ok(await c.gateway.call("GET", path, tenant))
    assert diagram["mermaid"].startswith("flowchart")


@case("POST", "/api/workflows/{workflow_id}/executions")
async def _start(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await active(c.gateway, tenant)
    path = f"/api/workflows/{workflow_id}/executions"
    body = {"input": {"name": "Ada"}, "request_id": unique("start")}
    execution = ok(await c.gateway.call("POST", path, tenant, json=body))
    assert execution["status"] in ("EXECUTION_STATUS_PENDING", "EXECUTION_STATUS_QUEUED")
    assert execution["workflow_id"] == workflow_id and execution["input"] == {"name": "Ada"}
    again = ok(await c.gateway.call("POST", path, tenant, json=body))
    assert again["id"] == execution["id"]  # the same request id: the same execution


@case("GET", "/api/executions/{execution_id}")
async def _get_execution(c: Context) -> None:
    tenant = await c.new_tenant()
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant), name="Ada")
    execution = await finished(c.gateway, tenant, execution_id)
    assert execution["status"] == "EXECUTION_STATUS_COMPLETED"
    assert execution["result"] == {"greeting": "Hello", "to": "Ada"}
    assert execution["steps_document"]["total_steps"] == 3
    path = f"/api/executions/{execution_id}"
    basic = ok(await c.gateway.call("GET", path, tenant, params={"view": "EXECUTION_VIEW_BASIC"}))
    assert "result" not in basic and basic["status"] == "EXECUTION_STATUS_COMPLETED"


@case("GET", "/api/executions")
async def _list_executions(c: Context) -> None:
    tenant = await c.new_tenant()
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant), name="Ada")
    await finished(c.gateway, tenant, execution_id)
    params = [("statuses", "EXECUTION_STATUS_COMPLETED"), ("statuses", "EXECUTION_STATUS_FAILED")]
    headers = headers_for(tenant)
    listed = ok(await c.gateway.http.get("/api/executions", params=params, headers=headers))
    assert [e["id"] for e in listed["executions"]] == [execution_id]
    params = [("statuses", "EXECUTION_STATUS_FAILED")]
    listed = ok(await c.gateway.http.get("/api/executions", params=params, headers=headers))
    assert listed["executions"] == []


@case("GET", "/api/workflows/{workflow_id}/executions")
async def _list_workflow_executions(c: Context) -> None:
    tenant = await c.new_tenant()
    first, second = await active(c.gateway, tenant), await active(c.gateway, tenant)
    execution_id = await started(c.gateway, tenant, first, name="Ada")
    await started(c.gateway, tenant, second, name="Grace")
    listed = ok(await c.gateway.call("GET", f"/api/workflows/{first}/executions", tenant))
    assert [e["id"] for e in listed["executions"]] == [execution_id]


@case("POST", "/api/workflows/{workflow_id}/test-execute")
async def _test_execute(c: Context) -> None:
    tenant = await c.new_tenant()
    draft = ok(await c.gateway.call("POST", "/api/workflows", tenant, json=hello()))
    path = f"/api/workflows/{draft['id']}/test-execute"
    body = {"input": {"name": "Ada"}, "debug_mode": True}
    answer = ok(await c.gateway.call("POST", path, tenant, json=body))
    assert answer["execution"]["test"] and answer["execution"]["result"]["greeting"] == "Hello"
    assert [s["step_id"] for s in answer["trace"]] == ["input", "greet", "done"]


@case("POST", "/api/workflows:testExecute")
async def _test_execute_inline(c: Context) -> None:
    tenant = await c.new_tenant()
    body = {"workflow": hello(), "input": {"name": "Ada"}}
    answer = ok(await c.gateway.call("POST", "/api/workflows:testExecute", tenant, json=body))
    assert answer["execution"]["status"] == "EXECUTION_STATUS_COMPLETED"
    assert answer["execution"].get("workflow_id", "") == ""
    assert answer["detail"] == "LOG_DETAIL_NONE"


@case("GET", "/api/workflows/{workflow_id}/stats")
async def _stats(c: Context) -> None:
    tenant = await c.new_tenant()
    workflow_id = await active(c.gateway, tenant)
    await finished(c.gateway, tenant, await started(c.gateway, tenant, workflow_id, name="Ada"))
    stats = ok(await c.gateway.call("GET", f"/api/workflows/{workflow_id}/stats", tenant))
    assert (stats["workflow_id"], stats["executions"], stats["completed"]) == (
        workflow_id,
        "1",
        "1",
    )


@case("POST", "/api/webhooks:complete")
async def _complete_webhook(c: Context) -> None:
    tenant = await c.new_tenant("professional")
    waiting = {
        "name": "Approval",
        "steps": [
            {"id": "input", "type": "input", "next": "approval"},
            {"id": "approval", "type": "webhook", "next": "done", "config": {"event": "ok"}},
            {"id": "done", "type": "output", "config": {"values": {"ok": "$.approval.ok"}}},
        ],
    }
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant, waiting))
    path = f"/api/executions/{execution_id}"
    token = None

    async def issued() -> bool:
        nonlocal token
        entry = ok(await c.gateway.call("GET", path, tenant))["steps_document"]["step_list"][1]
        token = (entry.get("callback") or {}).get("token")
        return bool(token)

    await eventually(issued, "the webhook step issued its token")
    body = {"token": token, "payload": {"ok": True}}
    answer = ok(await c.gateway.call("POST", "/api/webhooks:complete", tenant, json=body))
    assert answer["id"] == execution_id
    assert (await finished(c.gateway, tenant, execution_id))["result"] == {"ok": True}


@case("POST", "/api/executions/{execution_id}:cancel")
async def _cancel(c: Context) -> None:
    tenant = await c.new_tenant()
    slow = failing_once(c.effects().url(sleep=4))
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant, slow))
    path = f"/api/executions/{execution_id}:cancel"
    body = {"reason": "no longer needed"}
    execution = ok(await c.gateway.call("POST", path, tenant, json=body))
    assert execution["status"] == "EXECUTION_STATUS_CANCELLED"
    assert execution["cancelled_by"] == "user-1"


@case("POST", "/api/executions/{execution_id}:retry")
async def _retry(c: Context) -> None:
    tenant = await c.new_tenant()
    flaky = failing_once(c.effects().url(fail_first=1))
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant, flaky))
    failed = await finished(c.gateway, tenant, execution_id)
    assert failed["status"] == "EXECUTION_STATUS_FAILED", failed
    path = f"/api/executions/{execution_id}:retry"
    retried = ok(await c.gateway.call("POST", path, tenant))
    assert retried["id"] == execution_id and retried["error_detail"] == ""
    completed = await finished(c.gateway, tenant, execution_id)
    assert completed["status"] == "EXECUTION_STATUS_COMPLETED"


@case("POST", "/api/executions/{execution_id}:rerun")
async def _rerun(c: Context) -> None:
    tenant = await c.new_tenant()
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant), name="Ada")
    await finished(c.gateway, tenant, execution_id)
    path = f"/api/executions/{execution_id}:rerun"
    body = {"from_step": "greet", "input_patch": {"name": "Grace"}}
    rerun = ok(await c.gateway.call("POST", path, tenant, json=body))
    assert (rerun["rerun_of"], rerun["rerun_from_step"]) == (execution_id, "greet")
    completed = await finished(c.gateway, tenant, rerun["id"])
    assert completed["result"] == {"greeting": "Hello", "to": "Grace"}


@case("GET", "/api/executions/{execution_id}:watch")
async def _watch(c: Context) -> None:
    tenant = await c.new_tenant()
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant), name="Ada")
    path = f"/api/executions/{execution_id}:watch"
    async with c.gateway.http.stream("GET", path, headers=headers_for(tenant)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_events(response)  # the stream ends with the execution
    snapshot = events[0]
    assert snapshot.name == "snapshot" and snapshot.data["snapshot"]["id"] == execution_id
    if len(events) == 1:  # it had already finished: the snapshot says so, and the stream ends
        assert snapshot.data["snapshot"]["status"] == "EXECUTION_STATUS_COMPLETED"
        return
    assert events[-1].name == "workflow_execution_completed"
    completed = events[-1].data["event"]["workflow_execution_completed"]
    assert completed["status"] == "completed"
    ids = [int(e.event_id) for e in events[1:] if e.event_id]
    assert ids == sorted(ids) and len(ids) == len(events) - 1


@case("GET", "/api/events:subscribe")
async def _subscribe(c: Context) -> None:
    tenant = await c.new_tenant()
    execution_id = await started(c.gateway, tenant, await active(c.gateway, tenant), name="Ada")
    await finished(c.gateway, tenant, execution_id)
    params = {"topics": f"execution:{execution_id}", "after_event_id": "0"}
    async with c.gateway.http.stream(
        "GET", "/api/events:subscribe", params=params, headers=headers_for(tenant)
    ) as response:
        assert response.status_code == 200
        events = await Events(response).until("workflow_execution_completed")
    assert events[0].name == "workflow_execution_update"
    assert events[0].data["execution_id"] == execution_id  # the Event itself: response_body
    assert events[-1].data["workflow_execution_completed"]["status"] == "completed"
    # Resuming after the next-to-last event, by Last-Event-ID, gives exactly the last one.
    resume = {**headers_for(tenant), "Last-Event-ID": str(events[-2].event_id)}
    params = {"topics": f"execution:{execution_id}"}
    async with c.gateway.http.stream(
        "GET", "/api/events:subscribe", params=params, headers=resume
    ) as response:
        (again,) = await Events(response).until("workflow_execution_completed")
    assert again.event_id == events[-1].event_id


@case("GET", "/api/tenant")
async def _tenant(c: Context) -> None:
    tenant = await c.new_tenant("professional")
    found = ok(await c.gateway.call("GET", "/api/tenant", tenant))
    assert (found["id"], found["tier"]) == (tenant, "TIER_PROFESSIONAL")
    assert found["limits"]["max_workflows"] == "50"


@case("GET", "/api/notifications")
async def _notifications(c: Context) -> None:
    tenant = await c.new_tenant()
    listed = ok(await c.gateway.call("GET", "/api/notifications", tenant))
    assert listed == {"notifications": [], "next_page_token": "", "unread_count": "0"}


@case("POST", "/api/notifications:markRead")
async def _mark_read(c: Context) -> None:
    tenant = await c.new_tenant()
    path = "/api/notifications:markRead"
    assert ok(await c.gateway.call("POST", path, tenant, json={"all": True})) == {"marked": "0"}


@case("GET", "/api/notifications/settings")
async def _settings(c: Context) -> None:
    tenant = await c.new_tenant()
    path = "/api/notifications/settings"
    assert ok(await c.gateway.call("GET", path, tenant)) == {"on_completed": False}


@case("PATCH", "/api/notifications/settings")
async def _update_settings(c: Context) -> None:
    tenant = await c.new_tenant()
    path = "/api/notifications/settings"
    saved = ok(await c.gateway.call("PATCH", path, tenant, json={"on_completed": True}))
    assert saved == {"on_completed": True}
    assert ok(await c.gateway.call("GET", path, tenant)) == {"on_completed": True}


def test_every_route_has_a_success_case() -> None:
    assert set(CASES) == {(r.verb, r.template) for r in build_routes()}


@pytest.mark.parametrize("route", sorted(CASES), ids=" ".join)
async def test_route_answers_its_rpcs_success(
    gateway: Gateway, new_tenant: NewTenant, request: pytest.FixtureRequest, route: tuple[str, str]
) -> None:
    await CASES[route](Context(gateway, new_tenant, request))
