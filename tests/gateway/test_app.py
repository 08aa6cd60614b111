"""The gateway as HTTP: statuses of real refusals, its own refusals, headers passed on, CORS."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from foundation.settings import GatewaySettings, gateway_from_environment
from gateway import create_app
from service.server import RunningServer
from tests.conftest import NewTenant, token
from tests.gateway.calls import active, created, error_of, finished, hello, ok, started, unique
from tests.gateway.conftest import Gateway, headers_for, started_gateway
from tests.test_cli import free_port

ORIGIN = "https://app.example.com"


async def test_a_used_up_quota_is_429_with_the_tiers_numbers_in_details(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    for number in range(5):
        await created(gateway, tenant, hello(f"Workflow {number}"))
    response = await gateway.call("POST", "/api/workflows", tenant, json=hello("One too many"))
    error = error_of(response, 429, "tier_restriction")
    assert error["message"] == "max_workflows is 5 on the free tier and 5 are used"  # README's
    assert error["details"] == {
        "tier": "free",
        "quota": "max_workflows",
        "limit": "5",
        "used": "5",
        "requested": "1",
    }


async def test_a_feature_outside_the_plan_is_403_tier_restriction(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active(gateway, tenant)
    params = {"topics": f"workflow:{workflow_id}"}
    response = await gateway.call("GET", "/api/events:subscribe", tenant, params=params)
    error = error_of(response, 403, "tier_restriction")
    assert error["details"]["tier"] == "free" and error["details"]["feature"] == "monitoring"


async def test_streams_beyond_the_plans_cap_are_429(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")  # max_subscriptions 3
    params = {"topics": "notifications"}
    async with contextlib.AsyncExitStack() as held:
        for _ in range(3):
            stream = gateway.http.stream(
                "GET", "/api/events:subscribe", params=params, headers=headers_for(tenant)
            )
            assert (await held.enter_async_context(stream)).status_code == 200
        response = await gateway.call("GET", "/api/events:subscribe", tenant, params=params)
        error_of(response, 429, "tier_restriction")


async def test_a_state_conflict_is_400_and_a_taken_id_409(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active(gateway, tenant)
    execution_id = await started(gateway, tenant, workflow_id, name="Ada")
    await finished(gateway, tenant, execution_id)
    response = await gateway.call("POST", f"/api/executions/{execution_id}:cancel", tenant)
    error = error_of(response, 400, "workflow_execution_error")
    assert error["details"] == {"execution_id": execution_id, "status": "completed"}
    body = {"template_id": unique("twice"), "name": "Twice", "category": "testing"}
    path = f"/api/workflows/{workflow_id}:saveAsTemplate"
    ok(await gateway.call("POST", path, tenant, json=body))
    error = error_of(await gateway.call("POST", path, tenant, json=body), 409, "invalid_input")
    assert error["details"]["field_violations"] == [
        {"field": "template_id", "description": "taken by the tenant"}
    ]


async def test_an_invalid_definition_lists_its_field_violations(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    document = hello()
    document["steps"][1]["next"] = "nowhere"
    response = await gateway.call("POST", "/api/workflows", tenant, json=document)
    error = error_of(response, 400, "invalid_workflow_definition")
    assert any("nowhere" in v["description"] for v in error["details"]["field_violations"])


async def test_a_token_not_granting_the_tenant_is_403(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant, other = await new_tenant(), await new_tenant()
    headers = {"Authorization": f"Bearer {token([other])}", "X-Tenant-ID": tenant}
    response = await gateway.http.get("/api/tenant", headers=headers)
    error_of(response, 403, "permission_denied")


async def test_the_request_id_is_passed_on_and_echoed(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    chosen = f"req-{uuid.uuid4().hex}"
    headers = {"X-Request-ID": chosen}
    answered = await gateway.call("GET", "/api/tenant", tenant, headers=headers)
    assert answered.headers["x-request-id"] == chosen
    path = f"/api/workflows/{uuid.uuid4()}"
    # The server's own RequestInfo carries it: the gateway sent it on.
    refused = await gateway.call("GET", path, tenant, headers=headers)
    assert error_of(refused, 404, "workflow_not_found")["request_id"] == chosen
    unusable = await gateway.call("GET", path, tenant, headers={"X-Request-ID": "has spaces"})
    generated = error_of(unusable, 404, "workflow_not_found")["request_id"]
    assert str(uuid.UUID(generated)) == generated


@pytest.mark.parametrize(
    ("content", "description"),
    [
        (b'{"name": "Hello",', "Expecting"),
        (b"[1, 2]", "expected an object"),
        (b'{"name": NaN}', "NaN is not a JSON value"),
        (b'{"name": "\xff"}', "not UTF-8"),
    ],
)
async def test_a_malformed_body_is_400_invalid_input(
    gateway: Gateway, new_tenant: NewTenant, content: bytes, description: str
) -> None:
    tenant = await new_tenant()
    headers = {**headers_for(tenant), "Content-Type": "application/json"}
    response = await gateway.http.post("/api/workflows", content=content, headers=headers)
    error = error_of(response, 400, "invalid_input")
    (violation,) = error["details"]["field_violations"]
    assert violation["field"] == "body" and description in violation["description"]


@pytest.mark.parametrize(
    ("body", "field", "description"),
    [
        ({"nme": "Hello"}, "nme", "unknown field"),
        ({"name": 7}, "name", "expected a string"),
        ({"steps": [{"id": "a"}, {"id": 3}]}, "steps[1].id", "expected a string"),
        ({"steps": [{"retry": {"max_attempts": "x"}}]}, "steps[0].retry.max_attempts", "integer"),
        ({"steps": [{"on_error": "SOMETIMES"}]}, "steps[0].on_error", "ERROR_POLICY_RETRY"),
        ({"steps": [{"timeout": "soon"}]}, "steps[0].timeout", "duration"),
        ({"input_schema": [1]}, "input_schema", "JSON object"),
    ],
)
async def test_a_wrong_type_names_its_place_in_the_body(
    gateway: Gateway, new_tenant: NewTenant, body: dict[str, object], field: str, description: str
) -> None:
    tenant = await new_tenant()
    response = await gateway.call("POST", "/api/workflows", tenant, json=body)
    error = error_of(response, 400, "invalid_input")
    (violation,) = error["details"]["field_violations"]
    assert violation["field"] == field and description in violation["description"], violation


async def test_an_unknown_query_parameter_is_400(gateway: Gateway, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    response = await gateway.call("GET", "/api/workflows", tenant, params={"colour": "red"})
    error = error_of(response, 400, "invalid_input")
    assert error["details"]["field_violations"][0]["field"] == "colour"
    # A body of "*" leaves nothing to the query.
    path = "/api/workflows/validate-step"
    response = await gateway.call("POST", path, tenant, json={}, params={"step.id": "x"})
    error_of(response, 400, "invalid_input")


async def test_an_unknown_route_is_404_and_another_verb_405(gateway: Gateway) -> None:
    for path in ("/nothing-here", "/api", "/api/nothing-here", "/api/workflows/a/b/c/d"):
        error = error_of(await gateway.http.get(path), 404, "not_found")
        assert error["details"] == {"path": path.rstrip("/") or "/"}
    response = await gateway.http.put("/api/workflows")
    error = error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    assert error["details"] == {"allowed_methods": "GET, POST"}
    response = await gateway.http.put("/api/workflows/validate-step")
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "DELETE, GET, PATCH, POST"  # with /api/workflows/{id}


async def test_a_body_over_the_limit_is_413_and_not_json_415(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    headers = {**headers_for(tenant), "Content-Type": "application/json"}
    big = b'{"name": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = await gateway.http.post("/api/workflows", content=big, headers=headers)
    assert error_of(response, 413, "payload_too_large")["details"] == {"max_body_bytes": "4194304"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b" " * (1024 * 1024)

    response = await gateway.http.post("/api/workflows", content=chunks(), headers=headers)
    error_of(response, 413, "payload_too_large")
    form = {**headers_for(tenant), "Content-Type": "application/x-www-form-urlencoded"}
    response = await gateway.http.post("/api/workflows", content=b"name=x", headers=form)
    error_of(response, 415, "unsupported_media_type")
    empty = await gateway.http.post(f"/api/workflows/{uuid.uuid4()}:activate", headers=form)
    error_of(empty, 404, "workflow_not_found")  # no body: no type to check


async def test_a_header_outside_printable_ascii_is_400(gateway: Gateway) -> None:
    headers = [(b"authorization", "Bearer café".encode("latin-1")), (b"x-tenant-id", b"t")]
    response = await gateway.http.get("/api/tenant", headers=headers)
    error = error_of(response, 400, "invalid_input")
    assert error["details"]["field_violations"][0]["field"] == "authorization"


@pytest.mark.integration  # a gateway on uvicorn, though no server
async def test_a_server_out_of_reach_is_503_without_its_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    running = await started_gateway(address)
    try:
        async with httpx.AsyncClient(base_url=running.url) as client:
            response = await client.get("/api/tenant", headers={"X-Tenant-ID": "t"})
    finally:
        await running.stop()
    error = error_of(response, 503, "unavailable")
    assert address not in response.text and error["details"] == {}


@pytest.fixture(scope="module")
async def cors_gateway(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    running = await started_gateway(f"127.0.0.1:{server.port}", gateway_cors_origins=(ORIGIN,))
    async with httpx.AsyncClient(base_url=running.url) as client:
        yield client
    await running.stop()


async def test_cors_lets_the_configured_origin_call_and_read_errors(
    cors_gateway: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    preflight = await cors_gateway.options(
        "/api/workflows",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-tenant-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    tenant = await new_tenant()
    headers = {**headers_for(tenant), "Origin": ORIGIN}
    response = await cors_gateway.get(f"/api/workflows/{uuid.uuid4()}", headers=headers)
    error_of(response, 404, "workflow_not_found")
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    other = await cors_gateway.options(
        "/api/workflows",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


async def test_cors_is_off_by_default(gateway: Gateway) -> None:
    preflight = await gateway.http.options(
        "/api/workflows", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    error_of(preflight, 405, "method_not_allowed")
    response = await gateway.http.get("/api/tenant", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


async def test_extra_routes_are_served_first_and_refuse_in_the_error_body() -> None:
    async def page(request: Request) -> Response:
        return PlainTextResponse("the docs")

    async def broken(request: Request) -> Response:
        raise RuntimeError("secret internals")

    app = create_app(
        f"127.0.0.1:{free_port()}",
        routes=[Route("/api/docs", page, methods=["GET"]), Route("/api/broken", broken)],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        assert (await client.get("/api/docs")).text == "the docs"
        refused = await client.post("/api/docs")
        failed = await client.get("/api/broken", headers={"X-Request-ID": "broken-1"})
    assert error_of(refused, 405, "method_not_allowed")["details"] == {
        "allowed_methods": "GET, HEAD"
    }
    error = error_of(failed, 500, "internal")
    assert "secret" not in failed.text and error["request_id"] == "broken-1"


def test_the_gateways_settings_read_origins_as_a_list_and_hold_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WFE_GATEWAY_CORS_ORIGINS", f"{ORIGIN}/, https://admin.example.com")
    settings = gateway_from_environment()
    assert settings.gateway_cors_origins == (ORIGIN, "https://admin.example.com")
    assert GatewaySettings.model_fields["gateway_cors_origins"].default == ()  # CORS off
    assert not any("secret" in name for name in GatewaySettings.model_fields)
