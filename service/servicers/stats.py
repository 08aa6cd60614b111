"""GetWorkflowStats's window and answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from engine.stats import Durations, WorkflowStats
from foundation.errors import FieldViolation, InvalidInput
from persistence.models import ExecutionStatus
from service.servicers.messages import moment_of, timestamp
from wfe.v1 import workflow_pb2

DEFAULT_WINDOW: Final = timedelta(days=7)


def stats_window(
    request: workflow_pb2.GetWorkflowStatsRequest, retention_days: int
) -> tuple[datetime, datetime]:
    """[start, end): the request's, else the last 7 days; never before what the plan keeps."""
    now = datetime.now(UTC)
    end = moment_of(request, "end_time") or now
    start = moment_of(request, "start_time") or end - DEFAULT_WINDOW
    start = max(start, now - timedelta(days=retention_days))
    if start >= end:
        raise InvalidInput(
            "start_time must come before end_time (and within the plan's history retention)",
            violations=[FieldViolation("start_time", "before end_time")],
        )
    return start, end


def stats_message(stats: WorkflowStats) -> workflow_pb2.WorkflowStats:
    return workflow_pb2.WorkflowStats(
        workflow_id=stats.workflow_id,
        start_time=timestamp(stats.start),
        end_time=timestamp(stats.end),
        executions=stats.executions,
        completed=stats.count(ExecutionStatus.COMPLETED),
        failed=stats.count(ExecutionStatus.FAILED),
        cancelled=stats.count(ExecutionStatus.CANCELLED),
        running=stats.count(
            ExecutionStatus.QUEUED, ExecutionStatus.PENDING, ExecutionStatus.IN_PROGRESS
        ),
        failure_rate=stats.failure_rate,
        duration=_durations(stats.duration),
        steps=[
            workflow_pb2.StepStats(
                step_id=step.step_id,
                runs=step.runs,
                failures=step.failures,
                retries=step.retries,
                failure_rate=step.failure_rate,
                duration=_durations(step.duration),
            )
            for step in stats.steps
        ],
        bottleneck_step_id=stats.bottleneck,
    )


def _durations(found: Durations) -> workflow_pb2.DurationStats:
    return workflow_pb2.DurationStats(
        count=found.count,
        mean_ms=found.mean_ms,
        p50_ms=found.p50_ms,
        p95_ms=found.p95_ms,
        p99_ms=found.p99_ms,
        max_ms=found.max_ms,
    )
