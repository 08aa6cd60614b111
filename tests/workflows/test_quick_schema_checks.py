"""A small input against a small schema is checked where the start is handled; anything
else goes to a worker process. The quick check must answer exactly as the full one does,
and give up (None) rather than spend more than its small budget."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.control import QUICK_INPUT_BYTES, check_input_quickly
from engine.schemas import validate, validate_quickly
from engine.schemas.runtime import QUICK_NODES
from foundation.errors import InvalidInput

SMALL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "object"},
    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 10},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        },
        "additionalProperties": False,
    },
    {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[a-z]+$"}}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-20, 20) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["name", "n", "tags", "code", "x"]), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(schema=st.sampled_from(SMALL_SCHEMAS), value=json_values)
def test_a_quick_check_answers_exactly_as_the_full_check(
    schema: dict[str, Any], value: Any
) -> None:
    quick = validate_quickly(schema, value)
    assert quick is None or quick == validate(schema, value)


@pytest.mark.parametrize("schema", SMALL_SCHEMAS)
def test_small_schemas_on_small_inputs_are_checked_quickly(schema: dict[str, Any]) -> None:
    assert validate_quickly(schema, {"name": "ada", "n": 3}) is not None


def test_a_schema_with_many_nodes_is_left_to_the_full_check() -> None:
    wide = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string"} for i in range(QUICK_NODES)},
    }
    assert validate_quickly(wide, {"p1": "x"}) is None
    assert validate(wide, {"p1": "x"}) == []


def test_a_check_that_outgrows_the_quick_budget_is_left_to_the_full_check() -> None:
    items = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    value = list(range(500))  # three keyword evaluations per item: past the quick budget
    assert validate_quickly(items, value) is None
    assert validate(items, value) == []


def test_an_unfit_stored_schema_is_refused_as_the_full_check_refuses_it() -> None:
    fetching = {"$ref": "http://169.254.169.254/latest"}
    quick = validate_quickly(fetching, {})
    assert quick is not None and quick == validate(fetching, {})
    assert all(problem.in_schema for problem in quick)


def test_a_large_input_is_never_checked_quickly() -> None:
    definition = {"input_schema": {"type": "object"}}
    assert not check_input_quickly(definition, {}, QUICK_INPUT_BYTES + 1, "input")
    assert not check_input_quickly(definition, {}, None, "input")
    assert check_input_quickly(definition, {}, 2, "input")


def test_a_quick_check_refuses_a_bad_input_with_its_violations() -> None:
    definition = {"input_schema": SMALL_SCHEMAS[1]}
    with pytest.raises(InvalidInput) as refused:
        check_input_quickly(definition, {"name": 3}, 10, "input")
    assert [v.field for v in refused.value.violations] == ["input.name"]
