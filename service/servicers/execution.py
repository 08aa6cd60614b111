"""`wfe.v1.ExecutionService`: messages in and out; the work is in `service.executions`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

from google.protobuf import json_format, struct_pb2
from grpc import aio

from engine.progress import StepStatus
from foundation.errors import FieldViolation, InvalidInput
from persistence.models import Execution, ExecutionStatus
from service import pagination
from service.executions.service import ExecutionService, Filter
from service.servicers.messages import timestamp
from tenancy import current_identity
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


def _error(error: dict[str, Any] | None) -> execution_pb2.ExecutionError | None:
    if not error:
        return None
    return execution_pb2.ExecutionError(
        code=str(error.get("code") or ""),
        message=str(error.get("message") or ""),
        details=str(error.get("details") or ""),
        step_id=str(error.get("step_id") or ""),
        step_name=str(error.get("step_name") or ""),
    )


def _value(item: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(item, message)
    return message


def execution_message(row: Execution, *, with_outputs: bool = True) -> execution_pb2.Execution:
    """The record as the API shows it: the seed's structure plus typed fields."""
    steps = []
    for item in row.steps["step_list"]:
        step = execution_pb2.StepRun(
            step_id=item["id"],
            name=item["name"],
            status=STEP_STATUSES[StepStatus(item["status"])],
            start_time=_time(item.get("started_at")),
            complete_time=_time(item.get("completed_at")),
            attempts=int(item.get("attempts") or 0),
            error=_error(item.get("error")),
            duration_ms=int(item.get("duration_ms") or 0),
        )
        if with_outputs and item["id"] in row.outputs:
            step.output.CopyFrom(_value(row.outputs[item["id"]]))
        steps.append(step)
    message = execution_pb2.Execution(
        id=row.id,
        workflow_id=row.workflow_id,
        workflow_version=row.workflow_version,
        status=STATUSES[row.status],
        total_steps=row.steps["total_steps"],
        current_step_number=row.steps["current_step_number"],
        current_step=row.current_step or "",
        progress=row.progress,
        steps=steps,
        error_detail=row.error_detail or "",
        error=_error(row.error),
        created_by=row.created_by,
        create_time=timestamp(row.created_at),
        rerun_of=row.rerun_of or "",
        rerun_from_step=row.rerun_from_step or "",
        cancelled_by=row.cancelled_by or "",
    )
    message.input.update(row.input)
    if row.result is not None:
        message.result.update(row.result)
    for field, moment in (
        ("start_time", row.started_at),
        ("complete_time", row.completed_at),
        ("deadline", row.deadline_at),
    ):
        if moment is not None:
            getattr(message, field).CopyFrom(timestamp(moment))
    if with_outputs:
        message.steps_document.update(row.steps)
    return message


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(self, executions: ExecutionService) -> None:
        self._executions = executions

    async def StartExecution(
        self, request: execution_pb2.StartExecutionRequest, context: Context
    ) -> execution_pb2.StartExecutionResponse:
        started = await self._executions.start(
            current_identity(),
            request.workflow_id,
            json_format.MessageToDict(request.input),
            request.request_id,
        )
        return execution_pb2.StartExecutionResponse(execution=execution_message(started))

    async def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: Context
    ) -> execution_pb2.GetExecutionResponse:
        row = await self._executions.get(current_identity().tenant_id, request.execution_id)
        return execution_pb2.GetExecutionResponse(execution=execution_message(row))

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
            created_after=_moment(request, "created_after"),
            created_before=_moment(request, "created_before"),
            created_by=request.created_by,
        )
        listing = f"executions:{where.fingerprint()}"
        key = pagination.decode(request.page_token, tenant, listing)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        rows = await self._executions.list_page(tenant, where, after=after, limit=size + 1)
        page = [execution_message(row, with_outputs=False) for row in rows[:size]]
        token = pagination.next_token(rows, size, tenant, listing, pagination.creation_key)
        return execution_pb2.ListExecutionsResponse(executions=page, next_page_token=token)

    async def CancelExecution(
        self, request: execution_pb2.CancelExecutionRequest, context: Context
    ) -> execution_pb2.CancelExecutionResponse:
        row = await self._executions.cancel(
            current_identity(), request.execution_id, request.reason
        )
        return execution_pb2.CancelExecutionResponse(execution=execution_message(row))

    async def RetryExecution(
        self, request: execution_pb2.RetryExecutionRequest, context: Context
    ) -> execution_pb2.RetryExecutionResponse:
        row = await self._executions.retry(current_identity(), request.execution_id)
        return execution_pb2.RetryExecutionResponse(execution=execution_message(row))

    async def RerunExecution(
        self, request: execution_pb2.RerunExecutionRequest, context: Context
    ) -> execution_pb2.RerunExecutionResponse:
        rerun = await self._executions.rerun(
            current_identity(),
            request.execution_id,
            request.from_step,
            json_format.MessageToDict(request.input_patch),
            request.request_id,
        )
        return execution_pb2.RerunExecutionResponse(execution=execution_message(rerun))


def _moment(request: execution_pb2.ListExecutionsRequest, field: str) -> datetime | None:
    if not request.HasField(field):
        return None
    moment: datetime = getattr(request, field).ToDatetime(tzinfo=UTC)
    return moment
