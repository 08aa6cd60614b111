"""JSON and query strings to request messages, and answers to the JSON a frontend reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.routes import Route, Router, build_routes
from gateway.transcode import parse_body, request_message, response_json
from wfe.v1 import execution_pb2, workflow_pb2

ROUTER = Router(build_routes())


def built(verb: str, path: str, query: Sequence[tuple[str, str]] = (), body: Any = None) -> Any:
    route, variables = ROUTER.match(verb, path)
    return request_message(route, variables, list(query), body)


def refusal(verb: str, path: str, query: list[tuple[str, str]], body: Any = None) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        built(verb, path, query, body)
    assert (caught.value.status, caught.value.code) == (400, "invalid_input")
    return caught.value


def test_query_values_convert_as_json_strings_do() -> None:
    request = built(
        "GET",
        "/api/executions",
        [
            ("statuses", "EXECUTION_STATUS_FAILED"),
            ("statuses", "6"),
            ("created_after", "2026-01-31T12:00:00Z"),
            ("page_size", "20"),
            ("view", "EXECUTION_VIEW_FULL"),
        ],
    )
    assert list(request.statuses) == [
        execution_pb2.EXECUTION_STATUS_FAILED,
        execution_pb2.EXECUTION_STATUS_CANCELLED,
    ]
    assert request.created_after.seconds == 1769860800
    assert (request.page_size, request.view) == (20, execution_pb2.EXECUTION_VIEW_FULL)


@pytest.mark.parametrize(("text", "value"), [("true", True), ("1", True), ("False", False)])
def test_a_boolean_parameter_takes_true_false_1_or_0(text: str, value: bool) -> None:
    assert built("GET", "/api/templates", [("available_only", text)]).available_only is value


def test_an_update_mask_takes_proto_or_json_names() -> None:
    request = built(
        "PATCH", "/api/workflows/w-1", [("update_mask", "name,inputSchema,steps")], {"name": "x"}
    )
    assert list(request.update_mask.paths) == ["name", "input_schema", "steps"]


def test_the_path_names_the_resource_whatever_the_body_says() -> None:
    request = built("PATCH", "/api/workflows/w-1", [], {"id": "w-2", "name": "x"})
    assert (request.workflow.id, request.workflow.name) == ("w-1", "x")


def test_a_single_parameter_given_twice_is_refused() -> None:
    error = refusal("GET", "/api/workflows", [("page_size", "1"), ("page_size", "2")])
    assert error.details["field_violations"] == [
        {"field": "page_size", "description": "give it once"}
    ]


def test_a_parameter_the_body_or_path_fills_is_refused() -> None:
    refusal("POST", "/api/workflows", [("workflow.name", "x")], {})
    refusal("GET", "/api/workflows/w-1", [("id", "w-2")])
    assert built("POST", "/api/workflows", [("request_id", "r-1")], {}).request_id == "r-1"


def test_body_names_in_json_style_are_accepted_as_json_format_does() -> None:
    request = built("POST", "/api/workflows", [], {"inputSchema": {"type": "object"}})
    assert request.workflow.input_schema["type"] == "object"


def test_a_map_and_a_list_of_the_wrong_kind_name_their_place() -> None:
    error = refusal(
        "POST", "/api/workflows/validate-step", [], {"context": {"available_steps": "a"}}
    )
    assert error.details["field_violations"][0]["field"] == "context.available_steps"
    error = refusal("POST", "/api/notifications:markRead", [], {"ids": [1, "two"]})
    assert error.details["field_violations"][0] == {
        "field": "ids[1]",
        "description": "expected an integer (a number or a string of digits)",
    }


def test_an_empty_body_is_an_empty_request() -> None:
    assert parse_body(b"") == {} and parse_body(b"  \n") == {}


def test_answers_print_every_field_without_presence_by_proto_name() -> None:
    route: Route = ROUTER.match("POST", "/api/workflows/validate-step")[0]
    answer = workflow_pb2.ValidateStepResponse(valid=True)
    assert response_json(route, answer) == {"valid": True, "errors": [], "warnings": []}
    route = ROUTER.match("GET", "/api/workflows/w-1")[0]
    answer = workflow_pb2.GetWorkflowResponse(workflow=workflow_pb2.Workflow(id="w-1"))
    shown = response_json(route, answer)
    assert shown["id"] == "w-1" and shown["steps"] == [] and shown["version"] == "0"
    assert "input_schema" not in shown  # a message field left unset has presence: absent
