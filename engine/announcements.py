"""The events an execution appends, in seed 004's payloads, in the transition's transaction.

Streams and the gateway forward these payloads unchanged, so the keys are the seed's:
`workflow_execution_update`, `workflow_step_completed`, `workflow_execution_error` and
`workflow_execution_completed`. Two more follow the seed's domain-event pattern:
`workflow_step_failed` (retries used up) and `workflow_execution_control` (a caller
cancelled, retried or reran an execution, with who did it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine import events
from engine.progress import iso
from engine.rows import ExecutionRow
from engine.units import Unit
from persistence.models import ExecutionStatus

# The seed's live status words; the stored record says in_progress where events say running
# (a word of the event payloads, not an execution status).
LIVE_STATUS: dict[ExecutionStatus, str] = {ExecutionStatus.IN_PROGRESS: "running"}


def _append(unit: Unit, execution: ExecutionRow, kind: str, now: datetime, **fields: Any) -> None:
    payload = {
        "event": kind,
        "execution_id": execution.id,
        "workflow_id": execution.workflow_id,
        **fields,
        "timestamp": iso(now),
    }
    unit.event_rows.append(
        events.row(kind, payload, workflow_id=execution.workflow_id, execution_id=execution.id)
    )


def execution_update(
    unit: Unit,
    execution: ExecutionRow,
    now: datetime,
    *,
    step_name: str | None = None,
    started_at: datetime | None = None,
    message: str,
) -> None:
    _append(
        unit,
        execution,
        "workflow_execution_update",
        now,
        status=LIVE_STATUS.get(execution.status, execution.status),
        current_step=execution.current_step,
        progress=execution.progress,
        details={"step_name": step_name, "started_at": iso(started_at), "message": message},
    )


def step_completed(
    unit: Unit,
    execution: ExecutionRow,
    now: datetime,
    *,
    step_id: str,
    step_name: str,
    output: Any,
    duration_ms: int,
    next_step: str | None,
) -> None:
    _append(
        unit,
        execution,
        "workflow_step_completed",
        now,
        step_id=step_id,
        step_name=step_name,
        output=output,
        duration_ms=duration_ms,
        next_step=next_step,
    )


def step_failed(
    unit: Unit,
    execution: ExecutionRow,
    now: datetime,
    *,
    step_id: str,
    step_name: str,
    attempts: int,
    error: dict[str, Any],
    continues: bool,
) -> None:
    _append(
        unit,
        execution,
        "workflow_step_failed",
        now,
        step_id=step_id,
        step_name=step_name,
        attempts=attempts,
        error=error,
        execution_continues=continues,
    )


def execution_error(
    unit: Unit, execution: ExecutionRow, now: datetime, *, error: dict[str, Any]
) -> None:
    _append(
        unit,
        execution,
        "workflow_execution_error",
        now,
        error={
            "step_id": error.get("step_id"),
            "step_name": error.get("step_name"),
            "message": error.get("message", ""),
            "code": error.get("code", ""),
            "details": error.get("details", ""),
        },
    )


def execution_completed(unit: Unit, execution: ExecutionRow, now: datetime) -> None:
    started = execution.started_at or execution.created_at
    finished = execution.completed_at or now
    _append(
        unit,
        execution,
        "workflow_execution_completed",
        now,
        status=execution.status,
        started_at=iso(started),
        completed_at=iso(finished),
        duration_ms=int((finished - started).total_seconds() * 1000),
        output=execution.result,
    )


def control(
    unit: Unit,
    execution: ExecutionRow,
    now: datetime,
    *,
    action: str,
    actor: str,
    **details: Any,
) -> None:
    _append(
        unit,
        execution,
        "workflow_execution_control",
        now,
        action=action,
        actor=actor,
        details=details,
    )


def log_lines(
    unit: Unit, execution: ExecutionRow, now: datetime, step_id: str, lines: list[Any]
) -> None:
    for line in lines:
        _append(unit, execution, "workflow_execution_log", now, step_id=step_id, **line)
