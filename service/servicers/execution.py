"""`wfe.v1.ExecutionService`: messages in and out; the work is in `service.executions`.

Step tasks that an operation makes due are published after its transaction commits;
if that publish is lost, the sweeper publishes them later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias

from google.protobuf import json_format, struct_pb2
from grpc import aio
from sqlalchemy.exc import IntegrityError

from service import pagination
from service.engine.dispatch import Publisher
from service.engine.engine import timing_of, utcnow
from service.engine.transitions import Timing, Unit
from service.errors import ExecutionNotFound, FieldViolation, InvalidInput
from service.executions import repository
from service.executions import service as executions
from service.persistence.database import Database
from service.persistence.models import Execution
from service.servicers.tenant import timestamp
from service.settings import Settings
from service.tenants.service import plan_of
from tenancy import current_identity
from wfe.v1 import execution_pb2, execution_pb2_grpc

Context: TypeAlias = aio.ServicerContext[Any, Any]
STATUSES = {
    "queued": execution_pb2.EXECUTION_STATUS_QUEUED,
    "pending": execution_pb2.EXECUTION_STATUS_PENDING,
    "in_progress": execution_pb2.EXECUTION_STATUS_IN_PROGRESS,
    "completed": execution_pb2.EXECUTION_STATUS_COMPLETED,
    "failed": execution_pb2.EXECUTION_STATUS_FAILED,
    "cancelled": execution_pb2.EXECUTION_STATUS_CANCELLED,
}
STATUS_FILTERS = {number: name for name, number in STATUSES.items()}
STEP_STATUSES = {
    "pending": execution_pb2.STEP_STATUS_PENDING,
    "in_progress": execution_pb2.STEP_STATUS_IN_PROGRESS,
    "completed": execution_pb2.STEP_STATUS_COMPLETED,
    "failed": execution_pb2.STEP_STATUS_FAILED,
    "skipped": execution_pb2.STEP_STATUS_SKIPPED,
    "cancelled": execution_pb2.STEP_STATUS_CANCELLED,
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
            status=STEP_STATUSES[item["status"]],
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
    def __init__(self, database: Database, settings: Settings, publisher: Publisher) -> None:
        self._database = database
        self._timing: Timing = timing_of(settings)
        self._publisher = publisher

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[Unit]:
        """The call's transaction in its tenant, with the plan in force."""
        tenant = current_identity().tenant_id
        async with self._database.transaction(tenant) as session:
            yield Unit(session, await plan_of(session, tenant), utcnow(), self._timing)

    async def _change(
        self, work: Callable[[Unit], Awaitable[Execution]], *, request_id: str = ""
    ) -> execution_pb2.Execution:
        """Run `work` in a transaction, publish what it made due, answer with the execution."""
        try:
            async with self._unit() as unit:
                row = await work(unit)
                message = execution_message(row)
            self._publisher.publish(unit.publish)
            return message
        except IntegrityError:
            if not request_id:
                raise
        # A concurrent call with the same request_id won the insert: answer with its execution.
        async with self._unit() as unit:
            found = await repository.get_by_request(unit.session, request_id)
            if found is None:
                raise ExecutionNotFound(f"no execution for request {request_id!r}")
            return execution_message(found)

    async def StartExecution(
        self, request: execution_pb2.StartExecutionRequest, context: Context
    ) -> execution_pb2.StartExecutionResponse:
        actor = current_identity().subject
        payload = json_format.MessageToDict(request.input)

        async def work(unit: Unit) -> Execution:
            return await executions.start(
                unit, actor, request.workflow_id, payload, request.request_id
            )

        started = await self._change(work, request_id=request.request_id)
        return execution_pb2.StartExecutionResponse(execution=started)

    async def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: Context
    ) -> execution_pb2.GetExecutionResponse:
        async with self._unit() as unit:
            row = await executions.get(unit, request.execution_id)
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
        where = repository.Filter(
            workflow_id=request.workflow_id,
            statuses=tuple(STATUS_FILTERS[s] for s in request.statuses),
            created_after=_moment(request, "created_after"),
            created_before=_moment(request, "created_before"),
            created_by=request.created_by,
        )
        listing = f"executions:{where.fingerprint()}"
        key = pagination.decode(request.page_token, tenant, listing)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        async with self._unit() as unit:
            rows = await repository.list_page(unit.session, where, after=after, limit=size + 1)
        page = [execution_message(row, with_outputs=False) for row in rows[:size]]
        token = pagination.next_token(rows, size, tenant, listing, pagination.creation_key)
        return execution_pb2.ListExecutionsResponse(executions=page, next_page_token=token)

    async def CancelExecution(
        self, request: execution_pb2.CancelExecutionRequest, context: Context
    ) -> execution_pb2.CancelExecutionResponse:
        actor = current_identity().subject

        async def work(unit: Unit) -> Execution:
            return await executions.cancel(unit, actor, request.execution_id, request.reason)

        return execution_pb2.CancelExecutionResponse(execution=await self._change(work))

    async def RetryExecution(
        self, request: execution_pb2.RetryExecutionRequest, context: Context
    ) -> execution_pb2.RetryExecutionResponse:
        actor = current_identity().subject

        async def work(unit: Unit) -> Execution:
            return await executions.retry(unit, actor, request.execution_id)

        return execution_pb2.RetryExecutionResponse(execution=await self._change(work))

    async def RerunExecution(
        self, request: execution_pb2.RerunExecutionRequest, context: Context
    ) -> execution_pb2.RerunExecutionResponse:
        actor = current_identity().subject
        patch = json_format.MessageToDict(request.input_patch)

        async def work(unit: Unit) -> Execution:
            return await executions.rerun(
                unit, actor, request.execution_id, request.from_step, patch, request.request_id
            )

        rerun = await self._change(work, request_id=request.request_id)
        return execution_pb2.RerunExecutionResponse(execution=rerun)


def _moment(request: execution_pb2.ListExecutionsRequest, field: str) -> datetime | None:
    if not request.HasField(field):
        return None
    moment: datetime = getattr(request, field).ToDatetime(tzinfo=UTC)
    return moment
