"""Definitions and calls that workflow tests share."""

from __future__ import annotations

import uuid
from typing import Any

from grpc import aio

from service.workflows import documents
from tests.conftest import auth
from wfe.v1 import workflow_pb2, workflow_pb2_grpc


def stub(channel: aio.Channel) -> workflow_pb2_grpc.WorkflowServiceStub:
    return workflow_pb2_grpc.WorkflowServiceStub(channel)


def definition(
    name: str = "Enrichment", *, extra_tools: int = 0, advanced: bool = False
) -> dict[str, Any]:
    """input -> lookup (-> extra tools) -> decision -> output_success / output_failure."""
    tools = [
        {
            "id": f"tool_{index}",
            "type": "tool",
            "name": f"Log {index}",
            "config": {"tool": "log", "arguments": {"message": f"step {index}"}},
            "next": f"tool_{index + 1}" if index + 1 < extra_tools else "decision",
        }
        for index in range(extra_tools)
    ]
    lookup_next = "tool_0" if extra_tools else ("pause" if advanced else "decision")
    steps: list[dict[str, Any]] = [
        {"id": "input", "type": "input", "name": "Input", "next": "lookup"},
        {
            "id": "lookup",
            "type": "tool",
            "name": "Customer Lookup",
            "config": {
                "tool": "http_request",
                "arguments": {"url": "https://crm.example.com/customers", "method": "GET"},
            },
            "next": lookup_next,
            "retry": {"max_attempts": 3, "initial_interval": "1s", "backoff_coefficient": 2.0},
            "on_error": "retry",
            "timeout": "10s",
        },
        *tools,
    ]
    if advanced:
        steps.append(
            {
                "id": "pause",
                "type": "wait",
                "name": "Pause",
                "config": {"seconds": 5},
                "next": "decision",
            }
        )
    steps += [
        {
            "id": "decision",
            "type": "condition",
            "name": "Check Lookup",
            "config": {
                "conditions": [
                    {"condition": "$.lookup.status_code == 200", "next": "output_success"}
                ],
                "default": "output_failure",
            },
        },
        {
            "id": "output_success",
            "type": "output",
            "name": "Success",
            "config": {"values": {"customer": "$.lookup.body"}},
        },
        {
            "id": "output_failure",
            "type": "output",
            "name": "Failure",
            "config": {"values": {"success": False}},
        },
    ]
    return {
        "name": name,
        "description": "Looks a customer up and decides.",
        "input_schema": {"type": "object", "properties": {"email": {"type": "string"}}},
        "steps": steps,
    }


def message(document: dict[str, Any]) -> workflow_pb2.Workflow:
    return documents.parse_document(document)


async def create(
    channel: aio.Channel, tenant: str, document: dict[str, Any] | None = None, **kw: Any
) -> workflow_pb2.Workflow:
    request = workflow_pb2.CreateWorkflowRequest(
        workflow=message(document or definition()),
        request_id=kw.get("request_id", str(uuid.uuid4())),
    )
    return (await stub(channel).CreateWorkflow(request, metadata=auth(tenant))).workflow


async def update_steps(
    channel: aio.Channel, tenant: str, workflow_id: str, document: dict[str, Any]
) -> workflow_pb2.Workflow:
    proposed = message(document)
    proposed.id = workflow_id
    request = workflow_pb2.UpdateWorkflowRequest(workflow=proposed)
    request.update_mask.paths.append("steps")
    return (await stub(channel).UpdateWorkflow(request, metadata=auth(tenant))).workflow
