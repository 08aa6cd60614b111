"""Subscribe answers encoded once per event, whatever the number of streams it reaches.

A live event goes to every stream of its topic: a hundred streams of one tenant following
`all_executions` would otherwise each build the same message from the stored payload and
serialize it again. `EncodedEvents` keeps the encoded `SubscribeResponse` of recent
events (one per event and output policy), bounded in bytes, and the Subscribe method is
registered to send those bytes as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

import grpc

from engine.feed import FeedEvent
from service.servicers.event_messages import event_message
from service.streams.hub import Heartbeat
from wfe.v1 import event_pb2

CACHE_BYTES: Final = 32 * 1024 * 1024
"""Encoded answers kept for streams that reach the same event later."""
METHOD: Final = "Subscribe"
SERVICE: Final = "wfe.v1.EventService"


class EncodedEvents:
    """`SubscribeResponse` bytes by (event id, step outputs shown), least recent out first."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self._budget = budget
        self._held = 0
        self._answers: OrderedDict[tuple[int, bool], bytes] = OrderedDict()

    @property
    def held_bytes(self) -> int:
        return self._held

    def answer(self, item: FeedEvent | Heartbeat, *, step_outputs: bool) -> bytes:
        if isinstance(item, Heartbeat):
            return _encode(item, step_outputs)
        key = (item.id, step_outputs)
        found = self._answers.get(key)
        if found is not None:
            self._answers.move_to_end(key)
            return found
        encoded = _encode(item, step_outputs)
        if len(encoded) <= self._budget // 4:
            self._answers[key] = encoded
            self._held += len(encoded)
            while self._held > self._budget:
                _, dropped = self._answers.popitem(last=False)
                self._held -= len(dropped)
        return encoded


def _encode(item: FeedEvent | Heartbeat, step_outputs: bool) -> bytes:
    message = event_pb2.SubscribeResponse(event=event_message(item, step_outputs=step_outputs))
    encoded: bytes = message.SerializeToString()
    return encoded


def _sent_as_is(answer: bytes) -> bytes:
    return answer


def add_event_service(subscribe: Any, server: grpc.aio.Server) -> None:
    """Register `subscribe` (yielding encoded `SubscribeResponse`s) as EventService.Subscribe."""
    handlers = {
        METHOD: grpc.unary_stream_rpc_method_handler(
            subscribe,
            request_deserializer=event_pb2.SubscribeRequest.FromString,
            response_serializer=_sent_as_is,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
