"""The OpenAPI document: valid 3.1, one operation per route, proto3 JSON in its schemas, and
true to what the gateway answers."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gateway import create_app, pages
from gateway.comments import comments_of
from gateway.openapi import openapi_document
from gateway.routes import Route, build_routes
from tests.conftest import NewTenant
from tests.gateway.calls import active, created, error_of, finished, ok, started
from tests.gateway.conftest import Gateway

DOCUMENT = openapi_document(build_routes())
SCHEMAS = DOCUMENT["components"]["schemas"]
VERBS = ("get", "put", "post", "delete", "patch")


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, verb, item[verb])
        for path, item in DOCUMENT["paths"].items()
        for verb in VERBS
        if verb in item
    ]


def operation(verb: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = DOCUMENT["paths"][path][verb]
    return found


def parameters(verb: str, path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation(verb, path)["parameters"] if "name" in p}


def shape(template: str) -> str:
    """A path with its variables' names left out: routes of one shape share a path."""
    return re.sub(r"\{[^}]*\}", "{}", template)


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


async def test_the_document_served_is_the_one_of_the_apps_own_routes() -> None:
    app = create_app("127.0.0.1:9", routes=pages.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document(app.state.router.routes)


def test_every_route_of_the_gateway_is_exactly_one_operation() -> None:
    routes: tuple[Route, ...] = create_app("127.0.0.1:9").state.router.routes
    documented = Counter(
        (verb.upper(), shape(path), op["x-grpc-method"]) for path, verb, op in operations()
    )
    served = Counter((r.verb, shape(r.template), r.grpc_method) for r in routes)
    assert documented == served
    assert set(served.values()) == {1}
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)) == len(routes)


def test_every_operation_needs_the_token_and_tenant_and_answers_the_error_body() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["tenant"] == {
        **schemes["tenant"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Tenant-ID",
    }
    for path, verb, op in operations():
        assert op["security"] == [{"bearer": [], "tenant": []}], (verb, path)
        for status in ("4XX", "5XX"):
            assert op["responses"][status] == {"$ref": "#/components/responses/Error"}
    error = SCHEMAS["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "details", "request_id"]


def test_schemas_follow_the_proto3_json_mapping_with_proto_field_names() -> None:
    workflow = SCHEMAS["wfe.v1.Workflow"]["properties"]
    assert workflow["input_schema"]["type"] == "object"  # Struct, by its proto name
    assert workflow["version"]["type"] == "string"  # int64
    assert workflow["version"]["format"] == "int64"
    assert workflow["create_time"]["format"] == "date-time"  # Timestamp
    assert workflow["status"]["$ref"] == "#/components/schemas/wfe.v1.WorkflowStatus"
    assert SCHEMAS["wfe.v1.WorkflowStatus"]["enum"][:2] == [
        "WORKFLOW_STATUS_UNSPECIFIED",
        "WORKFLOW_STATUS_DRAFT",
    ]
    assert workflow["steps"]["items"] == {"$ref": "#/components/schemas/wfe.v1.Step"}
    step_run = SCHEMAS["wfe.v1.StepRun"]["properties"]
    assert "type" not in step_run["output"]  # Value: any JSON
    assert SCHEMAS["wfe.v1.RetryPolicy"]["properties"]["initial_interval"]["pattern"]  # Duration


def test_a_oneof_is_documented_and_allows_at_most_one_member() -> None:
    event = SCHEMAS["wfe.v1.Event"]
    assert event["x-oneofs"]["payload"][0] == "workflow_updated"
    assert "oneof `payload`" in event["properties"]["heartbeat"]["description"]
    check = Draft202012Validator({**event, "properties": {}})
    assert check.is_valid({"event_id": "1"})
    assert check.is_valid({"heartbeat": {}})
    assert not check.is_valid({"heartbeat": {}, "notification": {}})
    assert "x-oneofs" not in SCHEMAS["wfe.v1.TierLimits"]  # proto3 optional is no oneof


def test_parameters_are_what_the_transcoder_accepts() -> None:
    listed = parameters("get", "/api/executions")
    assert listed["statuses"]["schema"]["type"] == "array"
    assert (listed["statuses"]["style"], listed["statuses"]["explode"]) == ("form", True)
    assert listed["created_after"]["schema"]["format"] == "date-time"
    assert "workflow_id" in listed
    by_workflow = parameters("get", "/api/workflows/{workflow_id}/executions")
    assert by_workflow["workflow_id"]["in"] == "path"
    assert parameters("post", "/api/workflows")["request_id"]["in"] == "query"
    assert set(parameters("post", "/api/workflows/{workflow_id}/executions")) == {
        "workflow_id",  # the body is the whole request: no query
    }
    subscribe = operation("get", "/api/events:subscribe")
    assert parameters("get", "/api/events:subscribe")["topics"]["schema"]["type"] == "array"
    assert {"$ref": "#/components/parameters/LastEventId"} in subscribe["parameters"]
    assert "x-event-data" in subscribe["responses"]["200"]["content"]["text/event-stream"]


def test_routes_of_one_shape_share_the_first_ones_path() -> None:
    update = operation("patch", "/api/workflows/{id}")
    assert update["x-grpc-method"] == "/wfe.v1.WorkflowService/UpdateWorkflow"
    variable = parameters("patch", "/api/workflows/{id}")["id"]
    assert variable["in"] == "path" and "`workflow.id`" in variable["description"]
    assert update["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "wfe.v1.Workflow"
    )
    start = operation("post", "/api/workflows/{workflow_id}/executions")
    body = start["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"input", "request_id"}  # the path fills workflow_id


def test_descriptions_come_from_the_proto_comments() -> None:
    create = operation("post", "/api/workflows")
    assert create["summary"] == "Creates a draft workflow."
    assert "request_id" in create["description"]
    tags = {tag["name"]: tag.get("description", "") for tag in DOCUMENT["tags"]}
    assert tags["WorkflowService"].startswith("WorkflowService defines")
    assert "concurrency slot" in SCHEMAS["wfe.v1.ExecutionStatus"]["description"]


def test_comments_document_the_declaration_right_below_them() -> None:
    found = comments_of(
        """
        syntax = "proto3";
        package demo.v1;

        // A service.
        service Things {
          // Gets one;
          // the second line.
          rpc GetThing(GetThingRequest)
            returns (Thing) {
            option (google.api.http) = {get: "/things/{id}" additional_bindings {get: "/x"}};
          }
        }

        // A thing.
        //
        // Its second paragraph.
        message Thing {
          // Its id.
          string id = 1; // not this
          map<string, int64> counts = 2;

          // Kept apart by a blank line, so not the next field's.

          oneof kind {
            // A big one.
            Big big = 3;
          }
          // Its colour.
          Colour colour = 4;
        }

        enum Colour {
          // No colour.
          COLOUR_UNSPECIFIED = 0;
        }
        """
    )
    assert found == {
        "demo.v1.Things": "A service.",
        "demo.v1.Things.GetThing": "Gets one; the second line.",
        "demo.v1.Thing": "A thing.\n\nIts second paragraph.",
        "demo.v1.Thing.id": "Its id.",
        "demo.v1.Thing.big": "A big one.",
        "demo.v1.Thing.colour": "Its colour.",
        "demo.v1.Colour.COLOUR_UNSPECIFIED": "No colour.",
    }


def _validator(name: str) -> Draft202012Validator:
    """Checks a JSON value against a component, its references resolved in the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _conforms(name: str, value: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator(name).iter_errors(value)]
    assert errors == [], errors


async def test_the_gateways_answers_conform_to_the_documents_schemas(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active(gateway, tenant)
    execution_id = await started(gateway, tenant, workflow_id, name="Ada")
    _conforms("wfe.v1.Execution", await finished(gateway, tenant, execution_id))
    _conforms(
        "wfe.v1.Workflow", ok(await gateway.call("GET", f"/api/workflows/{workflow_id}", tenant))
    )
    listed = ok(await gateway.call("GET", "/api/executions", tenant))
    _conforms("wfe.v1.ListExecutionsResponse", listed)
    diagram = ok(await gateway.call("GET", f"/api/workflows/{workflow_id}/diagram", tenant))
    _conforms("wfe.v1.GetWorkflowDiagramResponse", diagram)
    _conforms("wfe.v1.Tenant", ok(await gateway.call("GET", "/api/tenant", tenant)))
    draft = await created(gateway, tenant)
    refused = await gateway.call("GET", f"/api/workflows/{draft}-missing", tenant)
    error_of(refused, 404, "workflow_not_found")
    _conforms("Error", refused.json())
