"""`wfe.v1.EventService`: live streams of the caller's events; the work is in `service.streams`.

Subscribe yields its answers already encoded (`encoded_events`): an event reaching many
streams is built and serialized once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from grpc import aio

from engine import topics
from foundation.errors import FieldViolation, InvalidInput
from service.servicers.encoded_events import EncodedEvents, add_event_service
from service.streams.hub import EventHub
from tenancy import current_identity
from tenancy.roles import authorize_topics
from wfe.v1 import event_pb2

Context: TypeAlias = aio.ServicerContext[Any, Any]


class EventServicer:
    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._encoded = EncodedEvents()

    def add_to(self, server: aio.Server) -> None:
        add_event_service(self.Subscribe, server)

    async def Subscribe(
        self, request: event_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """`SubscribeResponse`s, encoded."""
        identity = current_identity()
        names = list(request.topics)
        authorize_topics(identity, names)
        wanted = topics.parse(names, user=identity.subject)
        after = request.after_event_id if request.HasField("after_event_id") else None
        if after is not None and after < 0:
            raise InvalidInput(
                "after_event_id cannot be negative",
                violations=[FieldViolation("after_event_id", "0 or a received event_id")],
            )
        if after is None:
            after = self._hub.position  # "from now on": from the call, not from the plan read
        terms = await self._hub.terms(identity.tenant_id, wanted)
        async for item in self._hub.stream(identity.tenant_id, wanted, after, terms):
            yield self._encoded.answer(item, step_outputs=terms.step_outputs)
