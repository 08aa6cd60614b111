"""Errors stay within the metadata budget: a refusal arrives whole, however much was wrong."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.errors import FieldViolation, InvalidInput, InvalidWorkflowDefinition
from service.interceptors.errors import DEFAULT_BUDGET, MAX_TEXT, details_budget, to_status
from tests.conftest import NewTenant, auth, error_info, server_settings
from tests.workflow_helpers import message, stub
from tiers.plans import MAX_STEPS_CEILING
from wfe.v1 import workflow_pb2


def bad_request(status: status_pb2.Status) -> list[error_details_pb2.BadRequest.FieldViolation]:
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return list(bad.field_violations)
    return []


def trailer_bytes(status: status_pb2.Status) -> int:
    """What the status costs in trailers: base64 details plus the percent-encoded message."""
    size: int = status.ByteSize()
    return 4 * -(-size // 3) + 3 * len(status.message.encode())


async def test_a_definition_with_thousands_of_invalid_steps_is_refused_within_budget(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    steps = [
        {"id": f"s{index}", "type": "no_such_type", "name": "", "next": f"nowhere{index}"}
        for index in range(MAX_STEPS_CEILING)
    ]
    request = workflow_pb2.CreateWorkflowRequest(
        workflow=message({"name": "Broken", "steps": steps})
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await stub(channel).CreateWorkflow(request, metadata=auth(tenant))
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
    status = rpc_status.from_call(caught.value)
    assert status is not None
    shown = bad_request(status)
    assert 1 <= len(shown) <= server_settings().error_max_violations
    assert len(shown) + int(metadata["violations_omitted"]) >= MAX_STEPS_CEILING
    assert trailer_bytes(status) <= details_budget(server_settings().grpc_max_metadata_bytes)
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant)
    )
    assert list(listed.workflows) == []


def test_violations_past_the_cap_are_counted_not_listed() -> None:
    error = InvalidWorkflowDefinition(
        "5000 problems",
        metadata={"tier": "free"},
        violations=[FieldViolation(f"steps[{i}].type", "unknown") for i in range(5000)],
    )
    status = to_status(error, "req-1", max_violations=50)
    assert len(bad_request(status)) == 50
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert dict(info.metadata) == {"tier": "free", "violations_omitted": "4950"}
    assert trailer_bytes(status) <= DEFAULT_BUDGET


@settings(max_examples=200, deadline=None, database=None)
@given(
    count=st.integers(0, 300),
    description=st.text(min_size=0, max_size=2000),
    text=st.text(max_size=5000),
)
def test_any_error_fits_the_budget_with_texts_cut_short(
    count: int, description: str, text: str
) -> None:
    error = InvalidInput(
        text, violations=[FieldViolation(f"input.f{i}", description) for i in range(count)]
    )
    status = to_status(error, "req-1", max_violations=50)
    shown = bad_request(status)
    assert trailer_bytes(status) <= DEFAULT_BUDGET
    assert len(shown) <= min(count, 50)
    assert all(len(v.description) <= MAX_TEXT for v in shown)
    assert len(status.message) <= MAX_TEXT
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert int(info.metadata.get("violations_omitted", "0")) == count - len(shown)


def test_library_exception_text_is_scrubbed_of_paths_reprs_and_traces() -> None:
    leaky = (
        "bad value <class 'jsonschema.exceptions.ValidationError'> from "
        "/work/main/.venv/lib/python3.11/site-packages/jsonschema/validators.py at "
        "<engine.schemas.Checker object at 0x7f00deadbeef> Traceback (most recent call last):\n"
        '  File "/srv/app.py", line 3'
    )
    status = to_status(InvalidInput(leaky, violations=[FieldViolation("a", leaky)]), "req-1")
    for text in (status.message, bad_request(status)[0].description):
        assert "jsonschema.exceptions" not in text and "0x7f" not in text
        assert "site-packages" not in text and "Traceback" not in text and ".py" not in text
        assert text.startswith("bad value")
    kept = to_status(InvalidInput("GET https://crm.example.com/v1/customers failed"), "r")
    assert kept.message == "GET https://crm.example.com/v1/customers failed"
