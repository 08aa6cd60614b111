"""Failing steps: retried with backoff, then the step's error policy decides."""

from __future__ import annotations

import itertools
from typing import Any

from grpc import aio

from tenancy.database import TenantDatabase
from tests.conftest import NewTenant
from tests.effects_stub import Effects
from tests.engine.test_lifecycle import events_of
from tests.execution_helpers import (
    active_workflow,
    attempts_of,
    http,
    start,
    step,
    wait_until,
    workflow,
)
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED
FAST_RETRY = {"max_attempts": 3, "initial_interval": "0.2s", "backoff_coefficient": 2.0}


def calling(url: str, **policies: Any) -> dict[str, Any]:
    """input -> call -> done, with the call's retry and error policies."""
    return workflow(
        step("input", "input", "call"),
        http("call", "done", url, method="POST", name="External call", **policies),
        step("done", "output", config={"values": {"reached": True}}),
    )


async def test_a_failing_step_is_retried_with_backoff_until_it_succeeds(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    document = calling(effects.url(fail_first=2), retry=FAST_RETRY)
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    done = await wait_until(channel, tenant, started.id)
    assert done.status == COMPLETED, done.error_detail
    call = done.steps[1]
    assert call.attempts == 3
    assert call.status == execution_pb2.STEP_STATUS_COMPLETED
    assert effects.keys_of(started.id) == [f"{started.id}:call:{n}" for n in (1, 2, 3)]
    assert effects.applied_count(started.id, "call") == 1
    attempts = await attempts_of(database, tenant, started.id, "call")
    assert [a.status for a in attempts] == ["failed", "failed", "completed"]
    # The waits grow: 0.2 s after the first failure, 0.4 s after the second.
    waits = [
        (later.started_at - earlier.finished_at).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
        if later.started_at and earlier.finished_at
    ]
    assert waits[0] >= 0.2 and waits[1] >= 0.4


async def test_exhausted_retries_fail_the_execution_with_a_clear_error(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects, database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    document = calling(effects.url(status=503), retry={**FAST_RETRY, "max_attempts": 2})
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    done = await wait_until(channel, tenant, started.id)
    assert done.status == FAILED
    assert done.error.code == "external_service_error"
    assert done.error.step_id == "call" and done.error.step_name == "External call"
    assert done.error_detail.startswith("Step 'External call' failed: ")
    assert "503" in done.error_detail
    statuses = [execution_pb2.StepStatus.Name(s.status) for s in done.steps]
    assert statuses == ["STEP_STATUS_COMPLETED", "STEP_STATUS_FAILED", "STEP_STATUS_SKIPPED"]
    assert done.steps[1].attempts == 2
    assert not done.HasField("result")
    payloads = await events_of(database, tenant, started.id)
    kinds = [p["event"] for p in payloads]
    assert kinds[-3:] == [
        "workflow_step_failed",
        "workflow_execution_error",
        "workflow_execution_completed",
    ]
    error = payloads[-2]["error"]
    assert error["step_id"] == "call" and error["code"] == "external_service_error"
    assert {"message", "details", "step_name"} <= set(error)
    assert payloads[-1]["status"] == "failed"
    assert payloads[-3]["attempts"] == 2 and payloads[-3]["execution_continues"] is False
    retried = [p for p in payloads if "retrying" in p.get("details", {}).get("message", "")]
    assert len(retried) == 1


async def test_a_non_retryable_failure_is_not_retried(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    document = calling(effects.url(status=404), retry=FAST_RETRY)
    workflow_id = await active_workflow(channel, tenant, document)
    done = await wait_until(channel, tenant, (await start(channel, tenant, workflow_id)).id)
    assert done.status == FAILED
    assert done.error.code == "http_client_error"
    assert done.steps[1].attempts == 1


async def test_codes_the_policy_names_are_not_retried(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    retry = {**FAST_RETRY, "non_retryable_codes": ["external_service_error"]}
    document = calling(effects.url(status=503), retry=retry)
    workflow_id = await active_workflow(channel, tenant, document)
    done = await wait_until(channel, tenant, (await start(channel, tenant, workflow_id)).id)
    assert (done.status, done.steps[1].attempts) == (FAILED, 1)


async def test_on_error_continue_records_the_failure_and_goes_on(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    document = calling(effects.url(status=503), on_error="continue")
    workflow_id = await active_workflow(channel, tenant, document)
    done = await wait_until(channel, tenant, (await start(channel, tenant, workflow_id)).id)
    assert done.status == COMPLETED
    assert dict(done.result) == {"reached": True}
    assert done.steps[1].status == execution_pb2.STEP_STATUS_FAILED
    assert done.steps[1].error.code == "external_service_error"


async def test_on_error_retry_without_a_policy_uses_the_default_backoff(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    document = calling(effects.url(fail_first=1), on_error="retry")
    workflow_id = await active_workflow(channel, tenant, document)
    done = await wait_until(channel, tenant, (await start(channel, tenant, workflow_id)).id)
    assert done.status == COMPLETED
    assert done.steps[1].attempts == 2


async def test_a_step_past_its_timeout_fails_with_the_timeout(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("free")
    document = calling(effects.url(sleep=3), timeout="0.5s")
    workflow_id = await active_workflow(channel, tenant, document)
    done = await wait_until(channel, tenant, (await start(channel, tenant, workflow_id)).id)
    assert done.status == FAILED
    assert done.error.code in ("step_timeout", "external_service_error")
    assert "500ms" in done.error.details or "Timeout" in done.error.details
