"""`wfe.v1.Event` messages back to seed 004's JSON, as `engine.announcements` stored them.

The server types each stored payload into its `Event` message (`service.servicers.
event_messages`); this is the inverse, so a WebSocket client reads what the log holds:
the seed's keys (`started_at`, not `start_time`), its `ISO-timestamp`s with a `Z`, and
`null` where the engine wrote none (proto3 strings say so with ""). Each event also
carries its `event_id`, the position a reconnecting client resumes after. Numbers in a
step's output come through `google.protobuf.Value` as doubles; whole ones go out whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from wfe.v1 import event_pb2

JSON = dict[str, Any]
MAX_WHOLE: Final = 2**53
"""Beyond it a double no longer holds every integer: leave such numbers as they are."""


def event_json(event: event_pb2.Event) -> JSON:
    """The WebSocket message for an event of the log, or for a heartbeat."""
    kind = event.WhichOneof("payload")
    if kind == "heartbeat":
        return {"event": "heartbeat", "timestamp": _iso(event.event_time)}
    build = PAYLOADS.get(kind or "")
    if build is None:  # the server sent it without its payload: ids and time only
        fields: JSON = {"event": event.type, **_ids(event), "timestamp": _iso(event.event_time)}
    else:
        fields = build(event, getattr(event, kind or ""))
    return {**fields, "event_id": event.event_id}


def _iso(moment: Timestamp) -> str | None:
    """`engine.progress.iso`: the stored moment to the microsecond, UTC with a `Z`."""
    if moment.seconds == 0 and moment.nanos == 0:
        return None
    moment_utc: datetime = moment.ToDatetime(tzinfo=UTC)
    return moment_utc.isoformat().replace("+00:00", "Z")


def _optional(text: str) -> str | None:
    return text or None


def _plain(value: Any) -> Any:
    """`Value`'s doubles that are whole numbers as integers, at any depth."""
    if isinstance(value, float) and value.is_integer() and abs(value) < MAX_WHOLE:
        return int(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _json(message: Message) -> Any:
    return _plain(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _ids(event: event_pb2.Event) -> JSON:
    """The execution event's leading keys, in `announcements._append`'s order."""
    return {"execution_id": _optional(event.execution_id), "workflow_id": event.workflow_id}


def _execution(event: event_pb2.Event, fields: JSON) -> JSON:
    return {"event": event.type, **_ids(event), **fields, "timestamp": _iso(event.event_time)}


def _error(error: event_pb2.EventError) -> JSON:
    """An execution's error, with the keys `announcements.execution_error` always writes."""
    return {
        "step_id": _optional(error.step_id),
        "step_name": _optional(error.step_name),
        "message": error.message,
        "code": error.code,
        "details": error.details,
    }


def _attempt_error(error: event_pb2.EventError) -> JSON:
    """A failed attempt's error as the engine writes it (`code`, `message`, `details`); the
    step it names is the event's own."""
    found: JSON = {"code": error.code, "message": error.message, "details": error.details}
    found |= {key: getattr(error, key) for key in ("step_id", "step_name") if getattr(error, key)}
    return found


def _workflow_updated(event: event_pb2.Event, p: event_pb2.WorkflowUpdated) -> JSON:
    return {
        "event": event.type,
        "workflow_id": event.workflow_id,
        "name": p.name,
        "version": p.version,
        "previous_status": _optional(p.previous_status),
        "status": p.status,
        "updated_at": _iso(p.update_time),
        "updated_by": _optional(p.updated_by),
    }


def _execution_update(event: event_pb2.Event, p: event_pb2.WorkflowExecutionUpdate) -> JSON:
    details = {
        "step_name": _optional(p.details.step_name),
        "started_at": _iso(p.details.start_time),
        "message": p.details.message,
    }
    return _execution(
        event,
        {
            "status": p.status,
            "current_step": _optional(p.current_step),
            "progress": p.progress,
            "details": details,
        },
    )


def _step_completed(event: event_pb2.Event, p: event_pb2.WorkflowStepCompleted) -> JSON:
    fields: JSON = {"step_id": p.step_id, "step_name": p.step_name}
    if p.HasField("output"):  # cleared on a plan with limited monitoring: not sent at all
        fields["output"] = _json(p.output)
    fields |= {"duration_ms": p.duration_ms, "next_step": _optional(p.next_step)}
    return _execution(event, fields)


def _execution_error(event: event_pb2.Event, p: event_pb2.WorkflowExecutionError) -> JSON:
    return _execution(event, {"error": _error(p.error)})


def _execution_completed(event: event_pb2.Event, p: event_pb2.WorkflowExecutionCompleted) -> JSON:
    return _execution(
        event,
        {
            "status": p.status,
            "started_at": _iso(p.start_time),
            "completed_at": _iso(p.complete_time),
            "duration_ms": p.duration_ms,
            "output": _json(p.output) if p.HasField("output") else None,
        },
    )


def _step_failed(event: event_pb2.Event, p: event_pb2.WorkflowStepFailed) -> JSON:
    return _execution(
        event,
        {
            "step_id": p.step_id,
            "step_name": p.step_name,
            "attempts": p.attempts,
            "error": _attempt_error(p.error),
            "execution_continues": p.execution_continues,
        },
    )


def _control(event: event_pb2.Event, p: event_pb2.WorkflowExecutionControl) -> JSON:
    return _execution(
        event,
        {"action": p.action, "actor": p.actor, "details": _json(p.details)},
    )


def _log(event: event_pb2.Event, p: event_pb2.WorkflowExecutionLog) -> JSON:
    return _execution(event, {"step_id": p.step_id, "level": p.level, "message": p.message})


def _notification(event: event_pb2.Event, p: event_pb2.Notification) -> JSON:
    return {
        "event": event.type,
        "notification_id": p.id,
        "kind": p.kind,
        "message": p.message,
        "details": _json(p.details),
        "timestamp": _iso(p.create_time) or _iso(event.event_time),
    }


PAYLOADS: Final[Mapping[str, Callable[[event_pb2.Event, Any], JSON]]] = {
    "workflow_updated": _workflow_updated,
    "workflow_execution_update": _execution_update,
    "workflow_step_completed": _step_completed,
    "workflow_execution_error": _execution_error,
    "workflow_execution_completed": _execution_completed,
    "workflow_step_failed": _step_failed,
    "workflow_execution_control": _control,
    "workflow_execution_log": _log,
    "notification": _notification,
}
"""Each payload of `Event`, by its field name, to the seed's keys."""
