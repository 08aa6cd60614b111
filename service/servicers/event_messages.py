"""Events of the log as `wfe.v1.Event` messages: the seed's payloads, typed.

The log stores each payload as the seed writes it (`engine.announcements`); this is the
one place that reads those keys back. An event whose kind this module does not know, or
whose payload does not convert, still goes out, with its id, type, ids and time and no
payload: one odd row must not end every stream that meets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from google.protobuf import json_format, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from engine.feed import FeedEvent
from service.servicers.messages import timestamp
from service.streams.hub import Heartbeat
from wfe.v1 import event_pb2

logger = logging.getLogger(__name__)

Payload = Mapping[str, Any]


def event_message(item: FeedEvent | Heartbeat, *, step_outputs: bool = True) -> event_pb2.Event:
    """The message a stream sends for an event of the log, or for a heartbeat; without
    `step_outputs` (a plan with limited monitoring) a completed step's output is left out."""
    if isinstance(item, Heartbeat):
        return event_pb2.Event(
            type="heartbeat", event_time=timestamp(item.sent_at), heartbeat=event_pb2.Heartbeat()
        )
    message = event_pb2.Event(
        event_id=item.id,
        type=item.type,
        event_time=timestamp(item.created_at),
        workflow_id=item.workflow_id or "",
        execution_id=item.execution_id or "",
    )
    build = PAYLOADS.get(item.type)
    try:
        if build is None:
            raise ValueError(f"unknown event type {item.type!r}")
        payload = build(item.payload)
        moment = _time(item.payload.get("timestamp"))
    except (ValueError, TypeError, AttributeError, json_format.Error):
        logger.warning("event %d goes out without its payload", item.id, exc_info=True)
        return message
    if not step_outputs and item.type == "workflow_step_completed":
        payload.ClearField("output")
    getattr(message, item.type).CopyFrom(payload)
    if moment is not None:
        message.event_time.CopyFrom(moment)
    return message


def _time(text: object) -> Timestamp | None:
    if not isinstance(text, str) or not text:
        return None
    return timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _value(item: object) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(item, message)
    return message


def _struct(item: object) -> struct_pb2.Struct | None:
    if not isinstance(item, Mapping):
        return None
    message = struct_pb2.Struct()
    json_format.ParseDict(dict(item), message)
    return message


def _error(error: object) -> event_pb2.EventError:
    found: Payload = error if isinstance(error, Mapping) else {}
    return event_pb2.EventError(
        step_id=_text(found.get("step_id")),
        step_name=_text(found.get("step_name")),
        message=_text(found.get("message")),
        code=_text(found.get("code")),
        details=_text(found.get("details")),
    )


def _workflow_updated(p: Payload) -> event_pb2.WorkflowUpdated:
    return event_pb2.WorkflowUpdated(
        name=_text(p.get("name")),
        version=_text(p.get("version")),
        previous_status=_text(p.get("previous_status")),
        status=_text(p.get("status")),
        update_time=_time(p.get("updated_at")),
        updated_by=_text(p.get("updated_by")),
    )


def _execution_update(p: Payload) -> event_pb2.WorkflowExecutionUpdate:
    details: Payload = p.get("details") or {}
    return event_pb2.WorkflowExecutionUpdate(
        status=_text(p.get("status")),
        current_step=_text(p.get("current_step")),
        progress=float(p.get("progress") or 0.0),
        details=event_pb2.ExecutionUpdateDetails(
            step_name=_text(details.get("step_name")),
            start_time=_time(details.get("started_at")),
            message=_text(details.get("message")),
        ),
    )


def _step_completed(p: Payload) -> event_pb2.WorkflowStepCompleted:
    return event_pb2.WorkflowStepCompleted(
        step_id=_text(p.get("step_id")),
        step_name=_text(p.get("step_name")),
        output=_value(p.get("output")),
        duration_ms=int(p.get("duration_ms") or 0),
        next_step=_text(p.get("next_step")),
    )


def _execution_error(p: Payload) -> event_pb2.WorkflowExecutionError:
    return event_pb2.WorkflowExecutionError(error=_error(p.get("error")))


def _execution_completed(p: Payload) -> event_pb2.WorkflowExecutionCompleted:
    return event_pb2.WorkflowExecutionCompleted(
        status=_text(p.get("status")),
        start_time=_time(p.get("started_at")),
        complete_time=_time(p.get("completed_at")),
        duration_ms=int(p.get("duration_ms") or 0),
        output=_struct(p.get("output")),
    )


def _step_failed(p: Payload) -> event_pb2.WorkflowStepFailed:
    return event_pb2.WorkflowStepFailed(
        step_id=_text(p.get("step_id")),
        step_name=_text(p.get("step_name")),
        attempts=int(p.get("attempts") or 0),
        error=_error(p.get("error")),
        execution_continues=bool(p.get("execution_continues")),
    )


def _control(p: Payload) -> event_pb2.WorkflowExecutionControl:
    return event_pb2.WorkflowExecutionControl(
        action=_text(p.get("action")),
        actor=_text(p.get("actor")),
        details=_struct(p.get("details")),
    )


def _log(p: Payload) -> event_pb2.WorkflowExecutionLog:
    return event_pb2.WorkflowExecutionLog(
        step_id=_text(p.get("step_id")),
        level=_text(p.get("level")),
        message=_text(p.get("message")),
    )


def _notification(p: Payload) -> event_pb2.Notification:
    details: Payload = p.get("details") or {}
    return event_pb2.Notification(
        id=int(p.get("notification_id") or 0),
        kind=_text(p.get("kind")),
        message=_text(p.get("message")),
        details=_struct(details),
        workflow_id=_text(details.get("workflow_id")),
        execution_id=_text(details.get("execution_id")),
        source_event_id=int(details.get("source_event_id") or 0),
        create_time=_time(p.get("timestamp")),
    )


PAYLOADS: Final[Mapping[str, Callable[[Payload], Any]]] = {
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
"""Each kind of event the log holds, by the name of its field in `Event.payload`."""
