"""`webhook` steps: a callback token, an outbound call that carries it, a callback that
completes the step once, and a timeout that fails it."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc import aio

from tests.conftest import NewTenant, auth, error_info
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    executions,
    start,
    step,
    struct,
    to_dict,
    wait_until,
    workflow,
)
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED
IN_PROGRESS = execution_pb2.EXECUTION_STATUS_IN_PROGRESS


def approval(timeout: float = 600, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """input -> approval (webhook) -> done, whose result is the callback's payload."""
    config: dict[str, Any] = {"event": "approval.decided", "timeout_seconds": timeout}
    if request is not None:
        config["request"] = request
    return workflow(
        step("input", "input", "approval"),
        step("approval", "webhook", "done", config=config),
        step("done", "output", config={"values": {"approved": "$.approval.approved"}}),
    )


def waiting_token(execution: execution_pb2.Execution) -> str | None:
    for entry in to_dict(execution.steps_document)["step_list"]:
        if entry["id"] == "approval" and entry.get("callback"):
            return str(entry["callback"]["token"])
    return None


async def token_of(channel: aio.Channel, tenant: str, execution_id: str) -> str:
    waiting = await wait_until(
        channel,
        tenant,
        execution_id,
        frozenset({IN_PROGRESS}),
        where=lambda e: waiting_token(e) is not None,
    )
    token = waiting_token(waiting)
    assert token is not None
    return token


async def complete(
    channel: aio.Channel, tenant: str, token: str, payload: dict[str, Any]
) -> execution_pb2.Execution:
    request = execution_pb2.CompleteWebhookRequest(token=token, payload=struct(payload))
    answer = await executions(channel).CompleteWebhook(request, metadata=auth(tenant))
    return answer.execution


async def test_a_webhook_step_waits_for_its_callback_and_its_payload_is_the_output(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, approval())
    started = await start(channel, tenant, workflow_id)
    token = await token_of(channel, tenant, started.id)
    await complete(channel, tenant, token, {"approved": True})
    done = await wait_until(channel, tenant, started.id)
    assert done.status == COMPLETED
    assert to_dict(done.result) == {"approved": True}
    entry = next(e for e in to_dict(done.steps_document)["step_list"] if e["id"] == "approval")
    assert entry["status"] == "completed" and entry.get("callback") is None


async def test_a_callback_token_is_refused_the_second_time(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, approval())
    started = await start(channel, tenant, workflow_id)
    token = await token_of(channel, tenant, started.id)
    await complete(channel, tenant, token, {"approved": False})
    with pytest.raises(grpc.RpcError) as caught:
        await complete(channel, tenant, token, {"approved": True})
    code, reason, _ = error_info(caught.value)
    assert code == grpc.StatusCode.FAILED_PRECONDITION, reason
    done = await wait_until(channel, tenant, started.id)
    assert to_dict(done.result) == {"approved": False}


async def test_a_malformed_or_forged_token_is_refused_and_changes_nothing(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, approval())
    started = await start(channel, tenant, workflow_id)
    token = await token_of(channel, tenant, started.id)
    for bad, expected in (
        ("not-a-token", grpc.StatusCode.INVALID_ARGUMENT),
        ("whk1_%%%", grpc.StatusCode.INVALID_ARGUMENT),
        (token[:-4] + "AAAA", grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            await complete(channel, tenant, bad, {"approved": True})
        assert caught.value.code() == expected, bad
    await complete(channel, tenant, token, {"approved": True})
    assert (await wait_until(channel, tenant, started.id)).status == COMPLETED


async def test_a_webhook_without_a_callback_in_time_fails_with_webhook_timeout(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, approval(timeout=1))
    started = await start(channel, tenant, workflow_id)
    token = await token_of(channel, tenant, started.id)
    done = await wait_until(channel, tenant, started.id, patience=30)
    assert done.status == FAILED
    assert done.error.code == "webhook_timeout"
    with pytest.raises(grpc.RpcError) as caught:
        await complete(channel, tenant, token, {"approved": True})
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_outbound_request_carries_the_callback_token(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("professional")
    request = {
        "method": "POST",
        "url": effects.url(),
        "body": {"token": "$.approval.token", "event": "$.approval.event"},
    }
    workflow_id = await active_workflow(channel, tenant, approval(request=request))
    started = await start(channel, tenant, workflow_id)
    token = await token_of(channel, tenant, started.id)
    assert effects.keys_of(started.id), "the outbound call was made"
    sent = effects.bodies_of(started.id)
    assert sent == [{"token": token, "event": "approval.decided"}]
    await complete(channel, tenant, token, {"approved": True})
    assert (await wait_until(channel, tenant, started.id)).status == COMPLETED
