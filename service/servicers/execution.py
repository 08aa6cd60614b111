"""`wfe.v1.ExecutionService`: messages in and out; the work is in `service.executions`.

Inputs and outputs may be megabytes each, so answers come in views (AIP-157): a list
shows BASIC executions by default, and a FULL execution that would pass the message
size limit leaves out its largest parts and names them in `omitted_fields`; a page
stops early rather than exceed the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final, TypeAlias

from google.protobuf import json_format
from grpc import aio

from engine import traces
from engine.feed import FeedEvent
from engine.progress import StepStatus
from engine.rows import ExecutionRow
from engine.topics import ENDS_EXECUTION, Topics
from foundation.errors import FieldViolation, InvalidInput
from persistence.models import ExecutionStatus
from service import pagination
from service.executions.service import ExecutionService, Filter
from service.servicers import test_runs, values
from service.servicers.event_messages import event_message
from service.servicers.messages import error_message, moment_of, timestamp, value_message
from service.streams.hub import EventHub
from tenancy import TenantId, current_identity
from tiers import LogDetail
from wfe.v1 import execution_pb2, execution_pb2_grpc

Context: TypeAlias = aio.ServicerContext[Any, Any]
# The one mapping from the stored statuses to the API's (each enum's value is the seed's word).
STATUSES: dict[ExecutionStatus, int] = {
    ExecutionStatus.QUEUED: execution_pb2.EXECUTION_STATUS_QUEUED,
    ExecutionStatus.PENDING: execution_pb2.EXECUTION_STATUS_PENDING,
    ExecutionStatus.IN_PROGRESS: execution_pb2.EXECUTION_STATUS_IN_PROGRESS,
    ExecutionStatus.COMPLETED: execution_pb2.EXECUTION_STATUS_COMPLETED,
    ExecutionStatus.FAILED: execution_pb2.EXECUTION_STATUS_FAILED,
    ExecutionStatus.CANCELLED: execution_pb2.EXECUTION_STATUS_CANCELLED,
}
STATUS_FILTERS: dict[int, ExecutionStatus] = {number: name for name, number in STATUSES.items()}
STEP_STATUSES: dict[StepStatus, int] = {
    StepStatus.PENDING: execution_pb2.STEP_STATUS_PENDING,
    StepStatus.IN_PROGRESS: execution_pb2.STEP_STATUS_IN_PROGRESS,
    StepStatus.COMPLETED: execution_pb2.STEP_STATUS_COMPLETED,
    StepStatus.FAILED: execution_pb2.STEP_STATUS_FAILED,
    StepStatus.SKIPPED: execution_pb2.STEP_STATUS_SKIPPED,
    StepStatus.CANCELLED: execution_pb2.STEP_STATUS_CANCELLED,
}


def _time(text: str | None) -> Any:
    if not text:
        return None
    return timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))


def execution_message(
    row: ExecutionRow, *, full: bool = True, budget: int | None = None
) -> execution_pb2.Execution:
    """The record as the API shows it: the seed's structure plus typed fields.

    BASIC (`full=False`) leaves out the input, steps' outputs, the result and the steps
    document; FULL leaves out what does not fit in `budget` bytes.
    """
    steps = []
    for item in row.steps["step_list"]:
        step = execution_pb2.StepRun(
            step_id=item["id"],
            name=item["name"],
            status=STEP_STATUSES[StepStatus(item["status"])],
            start_time=_time(item.get("started_at")),
            complete_time=_time(item.get("completed_at")),
            attempts=int(item.get("attempts") or 0),
            error=error_message(item.get("error")),
            duration_ms=int(item.get("duration_ms") or 0),
        )
        if full and item["id"] in row.outputs:
            step.output.CopyFrom(value_message(row.outputs[item["id"]]))
        steps.append(step)
    message = execution_pb2.Execution(
        id=row.id,
        workflow_id=row.workflow_id or "",
        workflow_version=row.workflow_version,
        test=bool(row.test),
        status=STATUSES[row.status],
        total_steps=row.steps["total_steps"],
        current_step_number=row.steps["current_step_number"],
        current_step=row.current_step or "",
        progress=row.progress,
        steps=steps,
        error_detail=row.error_detail or "",
        error=error_message(row.error),
        created_by=row.created_by,
        create_time=timestamp(row.created_at),
        rerun_of=row.rerun_of or "",
        rerun_from_step=row.rerun_from_step or "",
        cancelled_by=row.cancelled_by or "",
    )
    if full:
        message.input.update(row.input)
    if full and row.result is not None:
        message.result.update(row.result)
    for field, moment in (
        ("start_time", row.started_at),
        ("complete_time", row.completed_at),
        ("deadline", row.deadline_at),
    ):
        if moment is not None:
            getattr(message, field).CopyFrom(timestamp(moment))
    if full:
        message.steps_document.update(row.steps)
    if budget is not None:
        _fit(message, budget)
    return message


def _fit(message: execution_pb2.Execution, budget: int) -> None:
    """Leave out step outputs, largest first, then the documents, until `message` fits."""
    if message.ByteSize() <= budget:
        return
    outputs = sorted(
        (index for index, step in enumerate(message.steps) if step.HasField("output")),
        key=lambda index: message.steps[index].output.ByteSize(),
        reverse=True,
    )
    parts = [(message.steps[i], "output", f"steps[{i}].output") for i in outputs]
    parts += [(message, name, name) for name in ("steps_document", "result", "input")]
    for owner, field, path in parts:
        if message.ByteSize() <= budget:
            return
        if owner.HasField(field):
            owner.ClearField(field)
            message.omitted_fields.append(path)


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(
        self,
        executions: ExecutionService,
        tokens: pagination.PageTokens,
        limit: int,
        hub: EventHub,
    ) -> None:
        self._executions = executions
        self._tokens = tokens
        self._budget = limit - pagination.ANSWER_HEADROOM
        self._hub = hub

    def _full(self, row: ExecutionRow) -> execution_pb2.Execution:
        return execution_message(row, budget=self._budget)

    async def StartExecution(
        self, request: execution_pb2.StartExecutionRequest, context: Context
    ) -> execution_pb2.StartExecutionResponse:
        execution_input, size = await values.finite_sized_dict(request.input, "input")
        started = await self._executions.start(
            current_identity(), request.workflow_id, execution_input, request.request_id, size
        )
        return execution_pb2.StartExecutionResponse(execution=self._full(started))

    async def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: Context
    ) -> execution_pb2.GetExecutionResponse:
        full = _view(request.view, execution_pb2.EXECUTION_VIEW_FULL)
        row = await self._executions.get(current_identity().tenant_id, request.execution_id)
        return execution_pb2.GetExecutionResponse(
            execution=execution_message(row, full=full, budget=self._budget)
        )

    async def ListExecutions(
        self, request: execution_pb2.ListExecutionsRequest, context: Context
    ) -> execution_pb2.ListExecutionsResponse:
        size = pagination.page_size(request.page_size)
        tenant = current_identity().tenant_id
        unknown = [s for s in request.statuses if s not in STATUS_FILTERS]
        if unknown:
            raise InvalidInput(
                f"unknown status filter {unknown[0]}",
                violations=[FieldViolation("statuses", "known execution statuses only")],
            )
        where = Filter(
            workflow_id=request.workflow_id,
            statuses=tuple(STATUS_FILTERS[s] for s in request.statuses),
            created_after=moment_of(request, "created_after"),
            created_before=moment_of(request, "created_before"),
            created_by=request.created_by,
        )
        listing = f"executions:{where.fingerprint()}"
        key = self._tokens.decode(request.page_token, tenant, listing)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        rows = await self._executions.list_page(tenant, where, after=after, limit=size + 1)
        full = _view(request.view, execution_pb2.EXECUTION_VIEW_BASIC)
        page = [execution_message(r, full=full, budget=self._budget) for r in rows[:size]]
        del page[pagination.fitting([m.ByteSize() for m in page], self._budget) :]
        token = self._tokens.after(rows, len(page), tenant, listing, pagination.creation_key)
        return execution_pb2.ListExecutionsResponse(executions=page, next_page_token=token)

    async def CancelExecution(
        self, request: execution_pb2.CancelExecutionRequest, context: Context
    ) -> execution_pb2.CancelExecutionResponse:
        row = await self._executions.cancel(
            current_identity(), request.execution_id, request.reason
        )
        return execution_pb2.CancelExecutionResponse(execution=self._full(row))

    async def TestExecute(
        self, request: execution_pb2.TestExecuteRequest, context: Context
    ) -> execution_pb2.TestExecuteResponse:
        identity = current_identity()
        wait = request.wait_seconds or DEFAULT_TEST_WAIT_SECONDS
        if not 1 <= wait <= MAX_TEST_WAIT_SECONDS:
            raise InvalidInput(
                f"wait_seconds is {request.wait_seconds}; from 1 to {MAX_TEST_WAIT_SECONDS}",
                violations=[FieldViolation("wait_seconds", f"1 to {MAX_TEST_WAIT_SECONDS}")],
            )
        await values.finite(request, "")
        inline = None
        if not request.workflow_id:
            inline = await test_runs.inline_definition(request.workflow)
        fixtures = {
            step_id: json_format.MessageToDict(value) for step_id, value in request.fixtures.items()
        }
        started, plan = await self._executions.test_execute(
            identity,
            request.workflow_id,
            inline,
            await values.finite_dict(request.input, "input"),
            fixtures,
        )
        await self._until_ended(identity.tenant_id, started.id, wait)
        row, attempts = await self._executions.attempts(identity.tenant_id, started.id)
        detail = plan.limits.log_detail if request.debug_mode else LogDetail.NONE
        return execution_pb2.TestExecuteResponse(
            execution=self._full(row),
            trace=[test_runs.step_trace(entry) for entry in traces.trace_of(row, attempts, detail)],
            detail=detail.value,
        )

    async def _until_ended(self, tenant: TenantId, execution_id: str, seconds: float) -> None:
        """Wait for the execution's end (its events, from the store then live), at most
        `seconds`."""
        _, last_event_id, finished = await self._executions.snapshot(tenant, execution_id)
        if finished:
            return
        topics = Topics.of_execution(execution_id)
        try:
            async with asyncio.timeout(seconds):
                async for item in self._hub.stream(tenant, topics, last_event_id):
                    if isinstance(item, FeedEvent) and item.type == ENDS_EXECUTION:
                        return
        except TimeoutError:
            return

    async def CompleteWebhook(
        self, request: execution_pb2.CompleteWebhookRequest, context: Context
    ) -> execution_pb2.CompleteWebhookResponse:
        row = await self._executions.complete_webhook(
            current_identity(), request.token, await values.finite_dict(request.payload, "payload")
        )
        return execution_pb2.CompleteWebhookResponse(execution=self._full(row))

    async def RetryExecution(
        self, request: execution_pb2.RetryExecutionRequest, context: Context
    ) -> execution_pb2.RetryExecutionResponse:
        row = await self._executions.retry(current_identity(), request.execution_id)
        return execution_pb2.RetryExecutionResponse(execution=self._full(row))

    async def RerunExecution(
        self, request: execution_pb2.RerunExecutionRequest, context: Context
    ) -> execution_pb2.RerunExecutionResponse:
        rerun = await self._executions.rerun(
            current_identity(),
            request.execution_id,
            request.from_step,
            await values.finite_dict(request.input_patch, "input_patch"),
            request.request_id,
        )
        return execution_pb2.RerunExecutionResponse(execution=self._full(rerun))

    async def WatchExecution(
        self, request: execution_pb2.WatchExecutionRequest, context: Context
    ) -> AsyncIterator[execution_pb2.WatchExecutionResponse]:
        tenant = current_identity().tenant_id
        row, last_event_id, finished = await self._executions.snapshot(tenant, request.execution_id)
        topics = Topics.of_execution(row.id)
        terms = None if finished else await self._hub.terms(tenant, topics)
        yield execution_pb2.WatchExecutionResponse(snapshot=self._full(row))
        if terms is None:
            return
        async for item in self._hub.stream(tenant, topics, last_event_id, terms):
            yield execution_pb2.WatchExecutionResponse(
                event=event_message(item, step_outputs=terms.step_outputs)
            )
            if isinstance(item, FeedEvent) and item.type == ENDS_EXECUTION:
                return


DEFAULT_TEST_WAIT_SECONDS: Final = 30
MAX_TEST_WAIT_SECONDS: Final = 120


def _view(view: int, default: int) -> bool:
    """Whether the requested view (or the method's default) is FULL."""
    if view not in execution_pb2.ExecutionView.values():
        raise InvalidInput(
            f"unknown view {view}", violations=[FieldViolation("view", "BASIC or FULL")]
        )
    chosen: int = view or default
    return bool(chosen == execution_pb2.EXECUTION_VIEW_FULL)
