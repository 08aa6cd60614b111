"""An event reaching many streams is encoded once; the cache stays within its bytes."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.feed import FeedEvent
from service.servicers.encoded_events import EncodedEvents
from tenancy import TenantId
from wfe.v1 import event_pb2


def step_completed(event_id: int, output: str = "x") -> FeedEvent:
    payload = {"event": "workflow_step_completed", "step_id": "s", "output": {"v": output}}
    return FeedEvent(
        event_id,
        TenantId("t"),
        "workflow_step_completed",
        "w",
        "e",
        payload,
        datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_streams_of_one_event_share_one_encoding_per_output_policy() -> None:
    encoded = EncodedEvents()
    event = step_completed(7)
    first = encoded.answer(event, step_outputs=True)
    assert encoded.answer(step_completed(7), step_outputs=True) is first
    without = encoded.answer(event, step_outputs=False)
    shown = event_pb2.SubscribeResponse.FromString(first).event.workflow_step_completed
    hidden = event_pb2.SubscribeResponse.FromString(without).event.workflow_step_completed
    assert shown.output.struct_value["v"] == "x" and not hidden.HasField("output")


def test_the_cache_keeps_within_its_byte_budget() -> None:
    encoded = EncodedEvents(budget=4000)
    answers = [encoded.answer(step_completed(i, "y" * 200), step_outputs=True) for i in range(100)]
    assert encoded.held_bytes <= 4000
    # The oldest were let go: asking again encodes anew, to the same bytes.
    again = encoded.answer(step_completed(0, "y" * 200), step_outputs=True)
    assert again == answers[0] and again is not answers[0]
