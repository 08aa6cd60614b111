"""(f) live streams at scale beside a no-op streaming floor; (g) throughput while watched.

(f) System: `subscribers` streams of `EventService.Subscribe` on the one `wfe serve`,
spread over `tenants` Enterprise tenants (the per-tenant stream cap stays out of the
way), each stream following its tenant's `execution:<id>`; a writer process commits
`rate` events a second in all, round-robin over the tenants (`bench.event_writer`), so
each event reaches `subscribers / tenants` streams. Floor: the same number of streams,
in the same client layout (`bench.subscribers`), on `bench.stream_floor`, whose groups
make the same number of messages a second of the same kind and size. On both sides
every stream is open and has had one event before the load starts; each side then
counts what its streams receive in a window of `seconds`, `settle` seconds later.

(g) The (a') run of 3-step no-op workflows, with and without `watchers` streams of the
run's tenant attached (`all_executions` and its workflow, admin role, replayed from the
start of the log so that each stream is known to be open before the first start), each
consuming every event of the run.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from queue import Empty
from typing import Literal

from grpc import aio

from bench import event_writer, scenarios, stream_floor
from bench.event_writer import Topic, Written
from bench.harness import Stack
from bench.report import Metric, p99
from bench.scenarios import Throughput
from bench.subscribers import Report, StreamSpec, Subscribers, Window
from tests.conftest import auth
from tests.execution_helpers import three_steps
from wfe.v1 import event_pb2

SUBSCRIBE_METHOD = "/wfe.v1.EventService/Subscribe"
CATCH_UP_SECONDS = 1.0
"""(g) watchers read on this long after the run's last completion, then stop."""


@dataclass(frozen=True)
class StreamPlan:
    subscribers: int
    rate: float
    """Events committed per second, all tenants together."""
    tenants: int
    processes: int
    """Client processes the streams are spread over, on both sides."""
    seconds: float
    settle: float
    watchers: int

    @property
    def offered(self) -> float:
        """Messages per second the streams would receive if every event reached them."""
        return self.rate * self.subscribers / self.tenants


def metrics(plan: StreamPlan) -> dict[str, Metric]:
    f = f"{plan.subscribers} subscribers @{plan.rate:g} events/s"
    return {
        "f": Metric("f", f"{f}, delivered msg/s", "msg/s", "msg/s", 0.5, True),
        "f50": Metric("f50", f"{f}, commit-to-delivery p50", "ms", "ms", None, False),
        "f99": Metric(
            "f99", f"{f}, commit-to-delivery p99", "ms", "ms", 100.0, False, absolute=True
        ),
        "g": Metric(
            "g", f"steps/s, {plan.watchers} subscribers ÷ none", "steps/s", "steps/s", 0.9, True
        ),
    }


@dataclass(frozen=True)
class Delivery:
    """What one side's streams received in the window."""

    window: Window
    report: Report
    written: Written | None = None

    @property
    def seconds(self) -> float:
        return self.window[1] - self.window[0]

    @property
    def rate(self) -> float:
        """Messages received per second in the window, all streams together."""
        return self.report.in_window / self.seconds

    @property
    def events_rate(self) -> float:
        """Events per second stamped in the window that reached at least one stream."""
        return len(self.report.stamps) / self.seconds

    @property
    def committed_rate(self) -> float | None:
        if self.written is None:
            return None
        start, end = self.window
        return sum(start <= s < end for s in self.written.stamps) / self.seconds

    def percentile_ms(self, which: Literal["p50", "p99"]) -> float:
        found = self.report.latencies
        if not found:
            return math.inf
        return 1000 * (statistics.median(found) if which == "p50" else p99(found))

    def summary(self, offered: float) -> str:
        committed = self.committed_rate
        writer = "" if committed is None else f", writer committed {committed:.0f}/s"
        written = self.written
        commit = (
            ""
            if written is None or not written.commit_seconds
            else f", insert+commit p50 {1000 * statistics.median(written.commit_seconds):.1f} ms"
            f" p99 {1000 * p99(written.commit_seconds):.1f} ms (included in the latency)"
        )
        errors = (
            ", ".join(
                f"{code} {count} (the first {at - self.window[0]:+.1f} s from the window's "
                f"start: {text!r})"
                for code, count in sorted(self.report.errors.items())
                for at, text in [self.report.first_errors.get(code, (math.nan, ""))]
            )
            or "none"
        )
        return (
            f"{self.rate:.0f} of {offered:.0f} msg/s offered; events stamped in the window that "
            f"reached a stream in it {self.events_rate:.0f}/s{writer}; "
            f"latency p50 {self.percentile_ms('p50'):.1f} ms, p99 {self.percentile_ms('p99'):.1f} "
            f"ms; {len(self.report.per_stream)} streams, failed: {errors}{commit}"
        )


async def _measure(
    stack: Stack,
    target: str,
    specs: list[StreamSpec],
    plan: StreamPlan,
    load: Callable[[], Awaitable[object]],
) -> Delivery:
    """Open the streams, start the `load` once each has its first event, count in the window."""
    subscribers = Subscribers(target, specs, plan.processes, stack.options.log_dir)
    try:
        await subscribers.settled()
        await load()
        start = time.time() + plan.settle
        window = (start, start + plan.seconds)
        subscribers.window(*window)
        report = await subscribers.report(patience=plan.settle + plan.seconds + 120)
    finally:
        await subscribers.close()
    return Delivery(window, report)


async def floor_delivery(stack: Stack, plan: StreamPlan) -> Delivery:
    """(f) floor: the streams on the no-op streaming server, `rate` messages/s in all."""
    run = uuid.uuid4().hex[:8]
    per_group = plan.rate / plan.tenants
    requests = [
        event_pb2.SubscribeRequest(
            topics=[stream_floor.topic(run, group, per_group)]
        ).SerializeToString()
        for group in range(plan.tenants)
    ]
    specs = [
        StreamSpec(stream_floor.METHOD, requests[i % plan.tenants], ())
        for i in range(plan.subscribers)
    ]
    async with aio.insecure_channel(stack.stream_floor_target) as channel:
        start = channel.unary_unary(stream_floor.START_METHOD)
        await channel.channel_ready()  # the call to start the load is all it sends
        return await _measure(
            stack, stack.stream_floor_target, specs, plan, lambda: start(run.encode())
        )


async def system_delivery(
    stack: Stack, plan: StreamPlan, socket_url: str | None = None
) -> Delivery:
    """(f) system: Subscribe streams on `wfe serve`, events from the writer process.

    With `socket_url` (the gateway's `ws://.../api/workflows/ws`), the same streams are
    WebSockets of the gateway instead, each subscribing to the same topic (for (i))."""
    tenants = [await stack.tenant(three_steps()) for _ in range(plan.tenants)]
    run = uuid.uuid4().hex[:8]
    topics = [Topic(t.id, t.workflow_id, f"bench-stream-{run}-{n}") for n, t in enumerate(tenants)]
    # From the start of the log: each stream replays the writer's first event of its
    # topic at once, and so is known to be open before the steady writing starts.
    specs = [
        StreamSpec(
            SUBSCRIBE_METHOD,
            event_pb2.SubscribeRequest(
                topics=[f"execution:{topics[i % plan.tenants].execution_id}"], after_event_id=0
            ).SerializeToString(),
            tenants[i % plan.tenants].metadata,
        )
        for i in range(plan.subscribers)
    ]
    if socket_url is not None:
        specs = [
            StreamSpec(
                socket_url,
                json.dumps(
                    {
                        "action": "subscribe",
                        "topics": [f"execution:{topics[i % plan.tenants].execution_id}"],
                        "after_event_id": 0,
                    }
                ).encode(),
                tuple((k.title(), v) for k, v in tenants[i % plan.tenants].metadata),
            )
            for i in range(plan.subscribers)
        ]
    spawn = multiprocessing.get_context("spawn")
    ready, go, stop, results = spawn.Event(), spawn.Event(), spawn.Event(), spawn.Queue()
    writer = spawn.Process(
        target=event_writer.write,
        args=(stack.service_url, topics, plan.rate, ready, go, stop, results),
        daemon=True,
    )
    writer.start()
    try:
        if not await asyncio.to_thread(ready.wait, 120):
            raise RuntimeError("the event writer did not get ready")
        delivered = await _measure(
            stack, stack.server_target, specs, plan, partial(asyncio.to_thread, go.set)
        )
    finally:
        stop.set()
        go.set()
        try:
            written: Written = await asyncio.to_thread(results.get, timeout=60)
        except Empty:
            raise RuntimeError("the event writer ended without a report") from None
        finally:
            await asyncio.to_thread(writer.join, 30)
    return Delivery(delivered.window, delivered.report, written)


@dataclass(frozen=True)
class Watched:
    run: Throughput
    events: int
    """Events of the run's executions in the log."""
    received: list[int]
    """Events each watcher received (its workflow's replayed events included)."""
    errors: dict[str, int]


async def steps_watched(stack: Stack, plan: StreamPlan, executions: int) -> Watched:
    """(g) system: the (a') run while `watchers` streams follow all of the tenant's events."""
    tenant = await scenarios.throughput_tenant(stack)
    request = event_pb2.SubscribeRequest(
        topics=["all_executions", f"workflow:{tenant.workflow_id}"], after_event_id=0
    ).SerializeToString()
    spec = StreamSpec(SUBSCRIBE_METHOD, request, auth(tenant.id, roles=["admin"]))
    watchers = Subscribers(
        stack.server_target, [spec] * plan.watchers, plan.processes, stack.options.log_dir
    )
    try:
        await watchers.settled()
        watchers.window(0.0, math.inf)
        run = await scenarios.steps_per_second(
            stack, executions, count_commits=False, tenant=tenant
        )
        watchers.window(0.0, time.time() + CATCH_UP_SECONDS)
        report = await watchers.report()
    finally:
        await watchers.close()
    events = await stack.observer.execution_events(tenant.id)
    await stack.observer.release()
    return Watched(run, events, report.per_stream, report.errors)


async def steps_unwatched(stack: Stack, executions: int) -> Throughput:
    """(g) floor: the same run with nobody watching."""
    return await scenarios.steps_per_second(stack, executions, count_commits=False)
