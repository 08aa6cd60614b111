"""TestExecute: a test run of a saved or inline definition, fixtures in place of calls, and
the trace of what each step did, in the detail the plan's log level allows."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc import aio

from service.workflows import documents
from service.workflows.templates import catalog
from tests.conftest import NewTenant, auth
from tests.execution_helpers import executions, struct, to_dict
from tests.workflow_helpers import create, message
from wfe.v1 import execution_pb2, tenant_pb2, tenant_pb2_grpc

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden" / "test_execute_seed.json"
LOOKUP = {
    "status": 200,
    "headers": {"content-type": "application/json"},
    "body": {
        "name": "Test Company",
        "company_domain": "example.com",
        "firmographics_available": True,
        "firmographics": {
            "company_size": "101-250",
            "industry": "Technology",
            "founded_year": 2010,
        },
    },
}
SEED_INPUT = {"customer": {"email": "ana@example.com", "name": "Ana"}}


def seed_workflow() -> dict[str, Any]:
    """Seed 004's workflow: customer lookup -> data enrichment -> decision -> output."""
    template = catalog()["customer-enrichment"]
    return documents.definition_of(documents.parse_document(copy.deepcopy(template.workflow)))


async def run_test(
    channel: aio.Channel, tenant: str, **fields: Any
) -> execution_pb2.TestExecuteResponse:
    fixtures = fields.pop("fixtures", {})
    request = execution_pb2.TestExecuteRequest(**fields)
    for step_id, value in fixtures.items():
        json_format.ParseDict(value, request.fixtures[step_id])
    return await executions(channel).TestExecute(request, metadata=auth(tenant))


def normalized(response: execution_pb2.TestExecuteResponse) -> dict[str, Any]:
    """The answer without what changes from run to run (ids, times, durations)."""
    answer = to_dict(response)
    execution = answer["execution"]
    for volatile in ("id", "workflow_id", "create_time", "start_time", "complete_time"):
        execution.pop(volatile, None)
    execution.pop("deadline", None)
    execution.pop("steps_document", None)
    for step in execution.get("steps", []):
        for volatile in ("start_time", "complete_time", "duration_ms"):
            step.pop(volatile, None)
    for entry in answer.get("trace", []):
        for volatile in ("start_time", "complete_time", "duration_ms"):
            entry.pop(volatile, None)
    return answer


async def test_the_seed_workflow_test_run_answers_its_golden_trace(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    created = await create(channel, tenant, seed_workflow())  # a draft: never activated
    answer = await run_test(
        channel,
        tenant,
        workflow_id=created.id,
        input=struct(SEED_INPUT),
        debug_mode=True,
        fixtures={"lookup": LOOKUP},
    )
    assert answer.execution.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert answer.execution.test
    found = normalized(answer)
    if not GOLDEN.exists():
        GOLDEN.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
        pytest.fail(f"no golden trace yet: wrote {GOLDEN.name}; review it and keep it")
    assert found == json.loads(GOLDEN.read_text())


async def test_a_free_tenants_trace_has_no_detailed_logs(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    created = await create(channel, tenant, seed_workflow())
    answer = await run_test(
        channel,
        tenant,
        workflow_id=created.id,
        input=struct(SEED_INPUT),
        debug_mode=True,
        fixtures={"lookup": LOOKUP},
    )
    assert answer.detail == tenant_pb2.LOG_DETAIL_NONE
    decision = next(t for t in answer.trace if t.step_id == "decision")
    lookup = next(t for t in answer.trace if t.step_id == "lookup")
    assert not decision.conditions and not lookup.HasField("input") and lookup.from_fixture
    assert to_dict(answer.execution.result)["success"] is True


async def test_an_inline_definition_runs_as_a_test_and_counts_no_execution_against_the_day(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    answer = await run_test(
        channel,
        tenant,
        workflow=message(seed_workflow()),
        input=struct(SEED_INPUT),
        debug_mode=True,
        fixtures={
            "lookup": {**LOOKUP, "body": {**LOOKUP["body"], "firmographics_available": False}}
        },
    )
    assert answer.execution.status == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert answer.execution.workflow_id == ""
    assert to_dict(answer.execution.result)["success"] is False
    decision = next(t for t in answer.trace if t.step_id == "decision")
    assert [(c.condition, c.holds) for c in decision.conditions] == [
        ("$.enrich_data.success == true", False)
    ]
    assert answer.detail == tenant_pb2.LOG_DETAIL_STANDARD
    tenant_stub = tenant_pb2_grpc.TenantServiceStub(channel)
    shown = await tenant_stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=auth(tenant))
    assert shown.tenant.usage.executions_today == 0


async def test_a_fixture_for_a_step_that_calls_nothing_is_refused(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    created = await create(channel, tenant, seed_workflow())
    for fixtures in ({"decision": {"x": 1}}, {"nowhere": {}}):
        with pytest.raises(grpc.RpcError) as caught:
            await run_test(
                channel, tenant, workflow_id=created.id, input=struct(SEED_INPUT), fixtures=fixtures
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
