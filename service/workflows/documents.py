"""Definitions between their three forms: `wfe.v1` messages, JSON/YAML documents and stored dicts.

The stored form is the protobuf JSON mapping with snake_case names and lowercase error
policies (`on_error: continue`), which is also what people write in YAML documents.
Going through the message normalises every document the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml
from google.protobuf import json_format

from foundation.errors import FieldViolation, InvalidWorkflowDefinition
from wfe.v1 import workflow_pb2

DEFINITION_FIELDS: Final = ("name", "description", "input_schema", "steps")
ERROR_POLICIES: Final = {
    "fail": workflow_pb2.ERROR_POLICY_FAIL,
    "retry": workflow_pb2.ERROR_POLICY_RETRY,
    "continue": workflow_pb2.ERROR_POLICY_CONTINUE,
}
HUMAN_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
POLICY_NAMES: Final = {
    workflow_pb2.ErrorPolicy.Name(number): name for name, number in ERROR_POLICIES.items()
}


def step_to_dict(step: workflow_pb2.Step) -> dict[str, Any]:
    """A step message in the stored form."""
    try:
        document: dict[str, Any] = json_format.MessageToDict(step, preserving_proto_field_name=True)
    except (json_format.SerializeToJsonError, ValueError) as error:
        # A Struct holding NaN or Infinity has no JSON form (protobuf 7 raises ValueError).
        raise InvalidWorkflowDefinition(
            f"step {step.id!r} holds a value JSON cannot carry: {error}",
            violations=[FieldViolation("steps", str(error))],
        ) from None
    policy = document.pop("on_error", None)
    if policy is not None:
        # An unknown enum number stays a number, for validation to refuse.
        document["on_error"] = POLICY_NAMES.get(policy, policy)
    return document


def step_from_dict(document: Mapping[str, Any]) -> workflow_pb2.Step:
    """A stored or written step as a message; InvalidWorkflowDefinition if it cannot be one."""
    step = workflow_pb2.Step()
    _parse(_with_policy_names(document), step, "step")
    return step


def definition_of(workflow: workflow_pb2.Workflow) -> dict[str, Any]:
    """The definition fields of a workflow message, in the stored form."""
    return {
        "name": workflow.name,
        "description": workflow.description,
        "input_schema": json_format.MessageToDict(workflow.input_schema)
        if workflow.HasField("input_schema")
        else {},
        "steps": [step_to_dict(step) for step in workflow.steps],
    }


def fill_definition(workflow: workflow_pb2.Workflow, definition: Mapping[str, Any]) -> None:
    """Set a message's definition fields from the stored form."""
    workflow.name = definition.get("name", "")
    workflow.description = definition.get("description", "")
    workflow.input_schema.Clear()
    workflow.input_schema.update(definition.get("input_schema") or {})
    del workflow.steps[:]
    workflow.steps.extend(step_from_dict(step) for step in definition.get("steps", []))


def load_document(text: str) -> workflow_pb2.Workflow:
    """A workflow message from a JSON or YAML document (JSON is YAML too)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidWorkflowDefinition(
            f"the document is not valid JSON or YAML: {error}",
            violations=[FieldViolation("document", str(error))],
        ) from None
    return parse_document(document)


def parse_document(document: object) -> workflow_pb2.Workflow:
    """A workflow message from an already parsed document."""
    if not isinstance(document, Mapping):
        raise InvalidWorkflowDefinition(
            "a workflow document is a mapping with name, steps, ...",
            violations=[FieldViolation("document", "expected a mapping at the top level")],
        )
    unknown = set(document) - {*DEFINITION_FIELDS}
    if unknown:
        raise InvalidWorkflowDefinition(
            f"unknown workflow fields: {', '.join(sorted(map(str, unknown)))}",
            violations=[
                FieldViolation(str(name), "unknown field") for name in sorted(map(str, unknown))
            ],
        )
    steps = document.get("steps") or []
    if not isinstance(steps, list):
        raise InvalidWorkflowDefinition(
            "steps must be a list", violations=[FieldViolation("steps", "expected a list")]
        )
    prepared = {**document, "steps": [_with_policy_names(step) for step in steps]}
    workflow = workflow_pb2.Workflow()
    _parse(prepared, workflow, "document")
    return workflow


def _with_policy_names(step: object) -> object:
    """A written step with the message's spelling of error policies and durations."""
    if not isinstance(step, Mapping):
        return step
    prepared = dict(step)
    policy = prepared.get("on_error")
    if isinstance(policy, str) and policy.lower() in ERROR_POLICIES:
        prepared["on_error"] = workflow_pb2.ErrorPolicy.Name(ERROR_POLICIES[policy.lower()])
    if "timeout" in prepared:
        prepared["timeout"] = _duration(prepared["timeout"])
    retry = prepared.get("retry")
    if isinstance(retry, Mapping):
        prepared["retry"] = {
            key: _duration(item) if key in ("initial_interval", "max_interval") else item
            for key, item in retry.items()
        }
    return prepared


def _duration(value: object) -> object:
    """'500ms', '1.5s', '2m', '1h' or a number of seconds, as the message's 'Ns' form."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value}s"
    if isinstance(value, str):
        match = HUMAN_DURATION.match(value.strip())
        if match:
            amount = float(match.group(1)) * DURATION_UNITS[match.group(2)]
            return f"{amount:.9f}".rstrip("0").rstrip(".") + "s"
    return value


def _parse(document: object, message: Any, field: str) -> None:
    try:
        # Round-trip through JSON so YAML's dates and other non-JSON scalars are refused plainly.
        json_format.Parse(json.dumps(document, default=_refuse, allow_nan=False), message)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise InvalidWorkflowDefinition(
            f"the definition does not match the workflow format: {error}",
            violations=[FieldViolation(field, str(error))],
        ) from None


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} values are not allowed ({value!r})")
