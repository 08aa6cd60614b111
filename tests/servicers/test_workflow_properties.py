"""Create accepts exactly what Validate calls valid (real server) on random definitions."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import grpc
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from engine.steptypes import STEP_TYPES
from foundation.errors import InvalidWorkflowDefinition
from service.workflows import documents
from service.workflows.templates import catalog
from tests.conftest import NewTenant, auth, error_info
from tests.workflow_helpers import stub
from tests.workflows.test_validation import structured_definitions
from wfe.v1 import workflow_pb2


@st.composite
def template_variants(draw: st.DrawFn) -> dict[str, Any]:
    """A catalog template, often with one mutation: nearly valid workflows of every tier."""
    template = draw(st.sampled_from(sorted(catalog().values(), key=lambda t: t.id)))
    definition = copy.deepcopy(template.workflow)
    steps = definition["steps"]
    index = draw(st.integers(0, len(steps) - 1))
    match draw(st.sampled_from(["none"] * 4 + ["drop", "retarget", "retype", "duplicate"])):
        case "drop":
            del steps[index]
        case "retarget":
            steps[index]["next"] = draw(st.sampled_from([s["id"] for s in steps] + ["nowhere"]))
        case "retype":
            steps[index]["type"] = draw(st.sampled_from(sorted(STEP_TYPES)))
        case "duplicate":
            steps.append(copy.deepcopy(steps[index]))
    return definition


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    definition=template_variants() | template_variants() | structured_definitions(),
    tier=st.sampled_from(["free", "professional", "enterprise"]),
)
async def test_create_accepts_exactly_what_validate_calls_valid(
    channel: Any, new_tenant: NewTenant, definition: dict[str, Any], tier: str
) -> None:
    try:
        proposed = documents.parse_document(definition)
    except InvalidWorkflowDefinition:
        assume(False)  # not even the message's shape; the document loader refuses it earlier
    tenant = await new_tenant(tier)
    verdict = await stub(channel).ValidateWorkflow(
        workflow_pb2.ValidateWorkflowRequest(workflow=proposed), metadata=auth(tenant)
    )
    event("valid" if verdict.valid else "invalid")
    request = workflow_pb2.CreateWorkflowRequest(workflow=proposed, request_id=str(uuid.uuid4()))
    try:
        created = await stub(channel).CreateWorkflow(request, metadata=auth(tenant))
    except grpc.RpcError as error:
        code, reason, metadata = error_info(error)
        assert not verdict.valid, f"valid, yet Create refused: {reason} {error.details()}"
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
        assert int(metadata["error_count"]) == len(verdict.errors)
        return
    assert verdict.valid, [e.code for e in verdict.errors]
    assert list(created.workflow.steps) == list(proposed.steps)
