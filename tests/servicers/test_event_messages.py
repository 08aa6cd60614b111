"""Events of the log as `wfe.v1.Event` messages: the seed's payloads, typed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.feed import FeedEvent
from service.servicers.event_messages import PAYLOADS, event_message
from service.streams.hub import Heartbeat
from tenancy.context import TenantId

WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def logged(kind: str, payload: dict[str, Any], execution_id: str | None = "e-1") -> FeedEvent:
    return FeedEvent(7, TenantId("t-1"), kind, "w-1", execution_id, payload, WHEN)


def test_the_seeds_execution_error_keeps_every_field() -> None:
    message = event_message(
        logged(
            "workflow_execution_error",
            {
                "event": "workflow_execution_error",
                "error": {
                    "step_id": "lookup",
                    "step_name": "Customer Lookup",
                    "message": "CRM unreachable",
                    "code": "external_service_error",
                    "details": "Timeout after 5000ms",
                },
                "timestamp": "2025-03-01T12:00:05Z",
            },
        )
    )
    assert (message.event_id, message.type, message.workflow_id, message.execution_id) == (
        7,
        "workflow_execution_error",
        "w-1",
        "e-1",
    )
    error = message.workflow_execution_error.error
    assert (error.step_id, error.code, error.details) == (
        "lookup",
        "external_service_error",
        "Timeout after 5000ms",
    )
    assert message.event_time.ToDatetime(tzinfo=UTC) == datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)


def test_every_kind_of_the_log_has_its_payload_field() -> None:
    for kind in PAYLOADS:
        message = event_message(logged(kind, {}))
        assert message.WhichOneof("payload") == kind


def test_an_unknown_or_malformed_event_goes_out_without_a_payload() -> None:
    for kind, payload in (
        ("something_new", {"x": 1}),
        ("workflow_step_completed", {"duration_ms": "soon"}),
        ("workflow_execution_update", {"details": "not an object"}),
    ):
        message = event_message(logged(kind, payload))
        assert (message.event_id, message.type) == (7, kind)
        assert message.WhichOneof("payload") is None
        assert message.event_time.ToDatetime(tzinfo=UTC) == WHEN


def test_a_heartbeat_has_no_event_id() -> None:
    message = event_message(Heartbeat(WHEN))
    assert (message.event_id, message.type, message.WhichOneof("payload")) == (
        0,
        "heartbeat",
        "heartbeat",
    )
