"""Typed outputs: a path that reads a field its step never produces is warned about."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.workflows.outputs import missing_field
from service.workflows.validation import validate_workflow
from tests.workflows.test_validation import FREE, condition, log, step, workflow


def http(step_id: str, next_step: str) -> dict[str, Any]:
    config = {"tool": "http_request", "arguments": {"url": "https://crm.example.com/find"}}
    return step(step_id, "tool", next_step, config=config)


def deciding(expression: str, input_schema: object = None) -> dict[str, Any]:
    """input -> lookup (http_request) -> decision on `expression` -> found / missing."""
    return workflow(
        step("input", "input", "lookup"),
        http("lookup", "decision"),
        condition("decision", [(expression, "found")], "missing"),
        step("found", "output", config={"values": {"customer": "$.lookup.body"}}),
        step("missing", "output", config={"values": {"found": False}}),
        input_schema=input_schema,
    )


def output_warnings(definition: dict[str, Any]) -> list[Any]:
    report = validate_workflow(definition, FREE)
    assert report.errors == []
    return [w for w in report.warnings if w.code == "unknown_output_field"]


def test_reading_status_from_http_request_warns_naming_step_path_and_fields() -> None:
    [warning] = output_warnings(deciding("$.lookup.status == 200"))

    assert (warning.step_id, warning.field) == (
        "decision",
        "steps[2].config.conditions[0].condition",
    )
    assert warning.position == 0
    assert "$.lookup.status" in warning.message
    assert "step 'lookup'" in warning.message
    assert "body, headers, status_code, url" in warning.message


def test_fields_the_tool_declares_and_anything_under_an_open_body_pass() -> None:
    expression = "$.lookup.status_code == 200 && exists $.lookup.body.id"

    assert output_warnings(deciding(expression)) == []
    assert output_warnings(deciding("$.lookup.headers.etag == 'x'")) == []


def test_each_occurrence_is_warned_where_it_stands() -> None:
    warnings = output_warnings(deciding("$.lookup.code == 1 || $.lookup.code == 2"))

    assert [w.position for w in warnings] == [0, 22]


def test_a_condition_steps_output_has_branch_and_next_only() -> None:
    definition = workflow(
        step("input", "input", "decision"),
        condition("decision", [("$.input.ok == true", "after")], "after"),
        step("after", "output", config={"values": {"b": "$.decision.branch", "x": "$.decision.x"}}),
    )

    [warning] = output_warnings(definition)

    assert warning.field == "steps[2].config.values.x"
    assert "branch, next" in warning.message


def test_a_closed_input_schema_types_the_input_and_an_open_one_does_not() -> None:
    closed = {"type": "object", "properties": {"email": {}}, "additionalProperties": False}
    expression = "exists $.input.mail"

    [warning] = output_warnings(deciding(expression, input_schema=closed))
    assert "the input" in warning.message and "email" in warning.message
    assert output_warnings(deciding(expression, input_schema={"type": "object"})) == []


def test_a_log_steps_output_is_its_message_and_level() -> None:
    definition = workflow(
        step("input", "input", "note"),
        log("note", "out"),
        step("out", "output", config={"values": {"m": "$.note.message", "s": "$.note.summary"}}),
    )

    [warning] = output_warnings(definition)

    assert warning.field == "steps[2].config.values.s"


def test_the_warning_never_blocks_a_save() -> None:
    report = validate_workflow(deciding("$.lookup.status == 200"), FREE)

    assert report.valid


NAMES = st.text("abcdefgh", min_size=1, max_size=3)


@st.composite
def closed_schemas(draw: st.DrawFn, depth: int = 3) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=0, max_size=4, unique=True))
    properties: dict[str, Any] = {}
    for name in names:
        properties[name] = draw(closed_schemas(depth - 1)) if depth > 1 else {}
    return {"type": "object", "properties": properties, "additionalProperties": False}


@given(closed_schemas(), st.lists(NAMES, max_size=4))
def test_a_path_is_missing_exactly_where_it_leaves_a_closed_schema(
    schema: dict[str, Any], path: list[str]
) -> None:
    expected = None
    node: Any = schema
    for depth, name in enumerate(path):
        properties = node.get("properties") if isinstance(node, dict) else None
        if properties is None:
            break
        if name not in properties:
            expected = (name, depth, tuple(sorted(properties)))
            break
        node = properties[name]

    found = missing_field(schema, path)

    assert (None if found is None else (found.field, found.depth, found.known)) == expected


@given(st.lists(NAMES | st.integers(0, 3), max_size=4))
def test_an_open_or_combined_schema_never_proves_a_field_missing(path: list[str | int]) -> None:
    for schema in (
        {"type": "object"},
        {"type": "object", "properties": {"a": {}}},
        {"anyOf": [{"type": "object"}], "additionalProperties": False},
        {"type": "object", "properties": {}, "patternProperties": {".*": {}}},
        {"type": "array", "items": {"type": "object"}},
        True,
    ):
        assert missing_field(schema, path) is None
