"""The live subscriptions of one server process, and how a batch of events reaches them.

A subscription holds at most `capacity` events for its stream. While it keeps up it is
live, and the dispatcher appends each event of its topics; one that would overflow is
no longer live, and its stream reads the rest from the log (`service.streams.hub`), so
memory stays bounded and nothing is dropped. Everything here runs on the event loop,
without awaiting: a batch is handed out, and a subscription changes state, atomically.

Subscriptions are indexed by tenant and topic key, so a batch costs one lookup per event,
and an event only ever meets subscriptions of its own tenant.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from typing import Final

from engine.feed import FeedEvent
from engine.topics import Topics
from tenancy import TenantId

Key = tuple[TenantId, str, str]
"""(tenant, family, id): `execution` or `workflow` and the id, id "" being the whole family;
or `user` and the user a notification is for."""

EXECUTIONS: Final = "execution"
WORKFLOWS: Final = "workflow"
RECIPIENTS: Final = "user"


class Subscription:
    """One stream's place in the log and the events waiting for it.

    `cursor`: every event of its topics up to this id has been handed to `pending` (or
    was never of its topics). `live`: the dispatcher appends to `pending`; otherwise the
    stream reads the log after `cursor` itself. `closed`: the server is going away.
    """

    __slots__ = ("capacity", "closed", "cursor", "live", "pending", "tenant", "topics", "wake")

    def __init__(self, tenant: TenantId, topics: Topics, cursor: int, capacity: int) -> None:
        self.tenant = tenant
        self.topics = topics
        self.cursor = cursor
        self.capacity = capacity
        self.live = False
        self.closed = False
        self.pending: deque[FeedEvent] = deque()
        self.wake = asyncio.Event()

    def keys(self) -> Iterator[Key]:
        if self.topics.all_executions:
            yield (self.tenant, EXECUTIONS, "")
        else:
            yield from ((self.tenant, EXECUTIONS, i) for i in sorted(self.topics.executions))
        if self.topics.all_workflows:
            yield (self.tenant, WORKFLOWS, "")
        else:
            yield from ((self.tenant, WORKFLOWS, i) for i in sorted(self.topics.workflows))
        if self.topics.recipient is not None:
            yield (self.tenant, RECIPIENTS, self.topics.recipient)

    def offer(self, event: FeedEvent) -> None:
        """Take a live event of its topics, or stop being live if there is no room."""
        if not self.live or event.id <= self.cursor:
            return
        if len(self.pending) >= self.capacity:
            self.fall_behind()
            return
        self.pending.append(event)
        self.cursor = event.id
        self.wake.set()

    def fall_behind(self) -> None:
        """Leave the dispatcher: the stream reads on from the log after `cursor`."""
        self.live = False
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class SubscriptionRegistry:
    """Every subscription of the process, by tenant and topic key."""

    def __init__(self) -> None:
        self._by_key: dict[Key, set[Subscription]] = {}
        self._by_tenant: dict[TenantId, set[Subscription]] = {}

    def add(self, subscription: Subscription) -> None:
        self._by_tenant.setdefault(subscription.tenant, set()).add(subscription)
        for key in subscription.keys():
            self._by_key.setdefault(key, set()).add(subscription)

    def remove(self, subscription: Subscription) -> None:
        for key in subscription.keys():
            found = self._by_key.get(key)
            if found is not None:
                found.discard(subscription)
                if not found:
                    del self._by_key[key]
        found = self._by_tenant.get(subscription.tenant)
        if found is not None:
            found.discard(subscription)
            if not found:
                del self._by_tenant[subscription.tenant]

    def count(self, tenant: TenantId | None = None) -> int:
        """Open subscriptions, of `tenant` or of all tenants."""
        if tenant is not None:
            return len(self._by_tenant.get(tenant, ()))
        return sum(len(subscriptions) for subscriptions in self._by_tenant.values())

    def tenants(self) -> frozenset[TenantId]:
        return frozenset(self._by_tenant)

    def buffered(self) -> int:
        """Events held for streams right now, in every subscription."""
        return sum(len(s.pending) for subs in self._by_tenant.values() for s in subs)

    def dispatch(self, batch: Sequence[FeedEvent], read_for: Collection[TenantId] | None) -> None:
        """Hand out `batch`, read for the tenants `read_for` (None: all) after the last batch.

        A live subscription of a tenant that was not read for subscribed after that read
        began; it reads this batch's range from the log instead.
        """
        for event in batch:
            recipient = event.recipient
            if recipient is not None:
                keys = [(event.tenant_id, RECIPIENTS, recipient)]
            else:
                family, ident = (
                    (EXECUTIONS, event.execution_id)
                    if event.execution_id is not None
                    else (WORKFLOWS, event.workflow_id)
                )
                keys = [(event.tenant_id, family, "")]
                if ident:
                    keys.append((event.tenant_id, family, ident))
            for key in keys:
                for subscription in self._by_key.get(key, ()):
                    subscription.offer(event)
        if read_for is not None:
            for tenant, subscriptions in self._by_tenant.items():
                if tenant not in read_for:
                    for subscription in subscriptions:
                        if subscription.live:
                            subscription.fall_behind()

    def close_all(self) -> None:
        for subscriptions in self._by_tenant.values():
            for subscription in subscriptions:
                subscription.close()
