"""Tenant JSON Schemas never leave the process and their regexes run in linear time.

The counting HTTP server is the witness: every schema here that names it must leave its
counter at zero, whether the schema is checked for saving or applied to an input.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.control import check_input
from engine.schemas import (
    MAX_PATTERNS,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    check_schema,
    validate,
)
from foundation.errors import InvalidInput
from service.workflows.validation import validate_step, validate_workflow

EVIL = "^(a+)+$"
NO_MATCH = "a" * 27 + "!"


class CountingServer(http.server.ThreadingHTTPServer):
    """Answers every GET with a schema, and counts the requests it received."""

    requests = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, CountingServer)
        self.server.requests += 1
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/schema+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def counting_server() -> Iterator[CountingServer]:
    server = CountingServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def witness() -> Iterator[CountingServer]:
    with counting_server() as server:
        yield server


def leaving_schemas(port: int) -> list[tuple[dict[str, Any], str]]:
    """Schemas whose references leave the document, with the path of the offending keyword."""
    url = f"http://127.0.0.1:{port}/x.json"
    return [
        ({"type": "object", "properties": {"a": {"$ref": url}}}, "properties.a.$ref"),
        ({"$ref": "file:///etc/passwd"}, "$ref"),
        ({"$id": f"http://127.0.0.1:{port}/", "$ref": "x.json"}, "$ref"),
        ({"$dynamicRef": url}, "$dynamicRef"),
        ({"$defs": {"a": {"$id": f"http://127.0.0.1:{port}/a/", "type": "string"}}}, "$defs.a.$id"),
    ]


def workflow(schema: object) -> dict[str, Any]:
    return {
        "name": "hostile",
        "input_schema": schema,
        "steps": [
            {"id": "input", "type": "input", "name": "Input", "next": "done"},
            {"id": "done", "type": "output", "name": "Done", "config": {"values": {}}},
        ],
    }


def schema_issues(schema: object) -> dict[str, str]:
    report = validate_workflow(workflow(schema), None)
    return {i.field: i.message for i in report.errors if i.code == "invalid_input_schema"}


def test_references_leaving_the_schema_are_refused_and_nothing_is_fetched(
    witness: CountingServer,
) -> None:
    for schema, path in leaving_schemas(witness.server_address[1]):
        issues = schema_issues(schema)
        assert f"input_schema.{path}" in issues, issues
        drawn = validate_step(workflow(schema)["steps"][0], ["done"], schema, None)
        assert f"context.input_schema.{path}" in {issue.field for issue in drawn.errors}
        applied = validate(schema, {"a": "x"})
        assert applied and all(problem.in_schema for problem in applied)
        with pytest.raises(InvalidInput) as refused:
            check_input({"input_schema": schema}, {"a": "x"}, "input")
        shown = str(refused.value) + repr(issues) + repr(applied)
        assert "root:" not in shown  # no line of /etc/passwd
    assert witness.requests == 0


def test_a_catastrophic_pattern_is_checked_in_linear_time() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": EVIL}},
        "patternProperties": {EVIL: {"type": "integer"}},
    }
    assert check_schema(schema) == []
    began = time.monotonic()
    for text in (NO_MATCH, "a" * 1_000_000 + "!"):
        problems = validate(schema, {"name": text, text: 1, "aaa": "not an integer"})
        assert [(p.path, p.in_schema) for p in problems] == [(("aaa",), False), (("name",), False)]
    assert validate(schema, {"name": "aaaa", "aa": 2}) == []
    assert time.monotonic() - began < 2


@pytest.mark.parametrize("pattern", ["(?=a)", "(a)\\1", "(?<!a)b", "["])
def test_a_pattern_re2_cannot_run_is_refused_where_it_stands(pattern: str) -> None:
    issues = schema_issues({"properties": {"a": {"pattern": pattern}}})
    assert "not a supported regular expression" in issues["input_schema.properties.a.pattern"]
    issues = schema_issues({"patternProperties": {pattern: {}}})
    assert f"input_schema.patternProperties.{pattern}" in issues


def test_patterns_too_big_or_too_many_are_refused_quickly() -> None:
    began = time.monotonic()
    huge = {"anyOf": [{"pattern": f"(\\pL|\\pN){{1000}}{n}"} for n in range(MAX_PATTERNS)]}
    issues = schema_issues(huge)
    assert len(issues) == MAX_PATTERNS
    assert "pattern too large" in issues["input_schema.anyOf[0].pattern"]
    many = {"properties": {f"p{n}": {"pattern": f"^{n}$"} for n in range(MAX_PATTERNS + 1)}}
    assert schema_issues(many) == {
        "input_schema": f"the schema has {MAX_PATTERNS + 1} patterns; at most {MAX_PATTERNS} "
        "are allowed"
    }
    assert time.monotonic() - began < 2


def test_an_unresolvable_local_reference_is_a_problem_never_an_exception() -> None:
    for schema in (
        {"$ref": "#/$defs/missing"},
        {"$ref": "#nowhere"},
        {"type": "string", "$ref": "#/type/0/x"},
        {"allOf": [{}], "$ref": "#/allOf/word"},
    ):
        assert schema_issues(schema) == {
            "input_schema.$ref": f"$ref {schema['$ref']!r} names nothing in this schema"
        }
        problems = validate(schema, "x")
        assert problems and problems[0].in_schema
        with pytest.raises(InvalidInput, match="input_schema is invalid"):
            check_input({"input_schema": schema}, {}, "input")


def test_references_that_loop_without_descending_are_refused() -> None:
    assert "input_schema" in schema_issues({"$ref": "#"})
    looping = {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}
    assert "input_schema.$defs.a.anyOf[0]" in schema_issues(looping)
    numbered = {"$defs": {"0": {"not": {"$ref": "#/$defs/0"}}}}
    assert "input_schema.$defs.0.not" in schema_issues(numbered)


def test_schemas_that_only_refer_inside_themselves_still_validate() -> None:
    tree = {
        "$id": "https://example.com/tree.schema.json",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"label": {"$anchor": "label", "type": "string", "maxLength": 5}},
        "type": "object",
        "properties": {"label": {"$ref": "#label"}, "children": {"items": {"$ref": "#"}}},
    }
    assert check_schema(tree) == []
    assert validate(tree, {"label": "root", "children": [{"label": "leaf"}]}) == []
    problems = validate(tree, {"children": [{"label": "far too long"}]})
    assert [problem.path for problem in problems] == [("children", 0, "label")]


def test_oversize_and_overdeep_schemas_are_refused_with_a_readable_violation() -> None:
    oversize = {"enum": ["x" * 1024] * (MAX_SCHEMA_BYTES // 1024 + 1)}
    assert (
        f"bytes; at most {MAX_SCHEMA_BYTES} are allowed" in schema_issues(oversize)["input_schema"]
    )
    deep: dict[str, Any] = {}
    for _ in range(MAX_SCHEMA_DEPTH + 5):
        deep = {"not": deep}
    issues = schema_issues(deep)
    field = "input_schema" + ".not" * MAX_SCHEMA_DEPTH
    assert issues == {field: f"nests deeper than {MAX_SCHEMA_DEPTH} levels"}


def test_non_finite_numbers_in_a_schema_are_refused() -> None:
    for number in (float("nan"), float("inf"), float("-inf")):
        assert schema_issues({"maximum": number}) == {
            "input_schema.maximum": f"{number} is not a JSON number"
        }
        assert validate({"maximum": number}, 1)[0].in_schema


def test_reference_fan_out_is_cut_off_by_the_work_budget() -> None:
    defs: dict[str, Any] = {"d30": {"type": "string"}}
    for level in range(30):
        step = {"$ref": f"#/$defs/d{level + 1}"}
        defs[f"d{level}"] = {"allOf": [step, step]}
    schema = {"$defs": defs, "$ref": "#/$defs/d0"}
    began = time.monotonic()
    problems = validate(schema, "x")
    assert time.monotonic() - began < 2
    assert [(p.message, p.in_schema) for p in problems] == [
        ("the input_schema takes too much work to check this input", True)
    ]


def test_unique_items_takes_linear_time_and_keeps_json_equality() -> None:
    schema = {"type": "array", "uniqueItems": True}
    began = time.monotonic()
    assert validate(schema, [{"n": index} for index in range(50_000)]) == []
    assert time.monotonic() - began < 2
    assert validate(schema, [{"n": 1}, {"n": 1.0}])
    assert validate(schema, [1, True, "1", None, 0, False]) == []


def test_a_violation_message_never_repeats_a_huge_input() -> None:
    problems = validate({"maxLength": 1}, "x" * 100_000)
    assert len(problems) == 1 and len(problems[0].message) <= 300


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
references = st.sampled_from(
    ["#", "#/$defs/a", "#/$defs/a/0", "#a", "x.json", "http://127.0.0.1:1/x", "file:///etc/passwd"]
) | st.text(max_size=12)
patterns = st.sampled_from([EVIL, "(?=a)", "[", "(a)\\1", "a{1000}{1000}", "\\p{L}+"]) | st.text(
    max_size=12
)
keywords = st.sampled_from(
    ["type", "properties", "items", "allOf", "anyOf", "not", "$defs", "a", "enum", "const",
     "minimum", "uniqueItems", "$anchor", "unevaluatedProperties", "required"]
)  # fmt: skip
schemas = st.recursive(
    st.booleans() | st.fixed_dictionaries({}, optional={"$ref": references, "pattern": patterns}),
    lambda inner: (
        st.dictionaries(keywords | st.text(max_size=4), inner | json_scalars, max_size=4)
        | st.lists(inner, max_size=3)
        | st.fixed_dictionaries(
            {},
            optional={
                "$ref": references,
                "$dynamicRef": references,
                "$id": references,
                "pattern": patterns,
                "patternProperties": st.dictionaries(patterns, inner, max_size=2),
                "$defs": st.fixed_dictionaries({"a": inner}),
                "properties": st.dictionaries(st.text(max_size=3), inner, max_size=2),
            },
        )
    ),
    max_leaves=12,
)
values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, value=values)
def test_any_schema_is_judged_without_raising_or_opening_a_socket(
    schema: object, value: object
) -> None:
    def tripwire(*_: object) -> None:
        raise AssertionError("a tenant schema opened a connection")

    with mock.patch.object(socket.socket, "connect", tripwire):
        problems = check_schema(schema)
        applied = validate(schema, value)
    assert all(isinstance(problem.message, str) for problem in [*problems, *applied])
    if problems:
        assert applied and all(problem.in_schema for problem in applied)
