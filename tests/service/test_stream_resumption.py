"""Resuming event streams across cuts, server processes and server restarts.

A client that loses its stream (it cancelled the call, or the server went away with
UNAVAILABLE) subscribes again with `after_event_id` set to the last event id it received,
on whichever server it reaches, and gets every later event exactly once, in id order. The
events are committed by real `wfe worker` processes (PostgreSQL) or by the embedded engine
(SQLite); the servers are in-process or real `wfe serve` processes.

Steps that must stay in flight until the test says so call a `Gate`: an HTTP endpoint
whose answers wait until the test opens them, so "mid-execution" never depends on timing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
from grpc import aio
from sqlalchemy import select

from engine.dispatch import Publisher
from foundation.settings import Settings
from persistence.models import Event
from service.server import RunningServer, start_server
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import (
    AUDIENCE,
    ISSUER,
    SECRET,
    NewTenant,
    auth,
    error_info,
    require,
    server_settings,
)
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import (
    Processes,
    broker_unavailable_reason,
    broker_url,
    purge_queue,
    unique_queue,
    wait_for_workers,
)
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    get,
    http,
    start,
    step,
    transform,
    wait_until,
    workflow,
)
from tests.fault_harness import (
    create_tenant,
    engine_env,
    engine_stack,
    free_port,
    log_tails,
    serve_process,
    wait_all_finished,
)
from tests.stream_helpers import Stream, ids, next_event, read_until, subscribe
from wfe.v1 import event_pb2, execution_pb2
from workers.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPLETED = "workflow_execution_completed"
IN_PROGRESS = execution_pb2.EXECUTION_STATUS_IN_PROGRESS
# A server that hears of other processes' commits only through their wake-ups (NOTIFY):
# its fallback poll never fires within a test's patience.
WAKE_UPS_ONLY = {"WFE_EVENT_POLL_SECONDS": "60"}
LISTENING = b"wfe listening on"
HOLD_LIMIT = 120.0
"""A gate opens by itself after this long, so a failed test never leaves a worker stuck."""


# --- events ---------------------------------------------------------------------------------


def ends(event: event_pb2.Event) -> bool:
    return bool(event.type == COMPLETED)


def at_step(step_id: str) -> Callable[[event_pb2.Event], bool]:
    """The event that says the execution moved to `step_id` (the step's start)."""
    return lambda event: (
        event.type == "workflow_execution_update"
        and event.workflow_execution_update.current_step == step_id
    )


def assert_strictly_increasing(found: Sequence[event_pb2.Event]) -> None:
    numbers = ids(list(found))
    assert all(a < b for a, b in pairwise(numbers)), f"ids out of order or repeated: {numbers}"
    assert 0 not in numbers, "a heartbeat among the events"


async def read_all(
    stream: Stream, done: Callable[[list[event_pb2.Event]], bool], patience: float = 60.0
) -> list[event_pb2.Event]:
    """Events until `done` holds for what was read."""
    found: list[event_pb2.Event] = []
    while not done(found):
        found.append(await next_event(stream, patience))
    return found


async def next_watched(call: Stream, patience: float = 60.0) -> event_pb2.Event:
    """A WatchExecution call's next event, skipping heartbeats; fails if the call ends."""
    async with asyncio.timeout(patience):
        while True:
            answer = await call.read()
            assert answer is not aio.EOF, "the watch ended"
            assert answer.WhichOneof("update") == "event", "a second snapshot"
            if answer.event.WhichOneof("payload") != "heartbeat":
                event: event_pb2.Event = answer.event
                return event


def watch_call(channel: aio.Channel, tenant: str, execution_id: str) -> Stream:
    return executions(channel).WatchExecution(
        execution_pb2.WatchExecutionRequest(execution_id=execution_id), metadata=auth(tenant)
    )


@dataclass(frozen=True)
class Logged:
    id: int
    execution_id: str | None
    type: str
    payload: dict[str, Any]


async def log_of(database: TenantDatabase, tenant: str) -> list[Logged]:
    """Every event of the tenant, as the log holds them, oldest first."""
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.execute(
            select(Event.id, Event.execution_id, Event.type, Event.payload).order_by(Event.id)
        )
        return [Logged(int(i), e, t, dict(p)) for i, e, t, p in rows.all()]


async def until_logged(
    database: TenantDatabase, tenant: str, wanted: Callable[[Logged], bool], what: str
) -> Logged:
    """Wait until the log holds an event that `wanted` accepts (committed, whoever wrote it)."""
    deadline = time.monotonic() + 60
    while True:
        found = [row for row in await log_of(database, tenant) if wanted(row)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not logged within 60s")
        await asyncio.sleep(0.05)


def completed_event(execution_id: str) -> Callable[[Logged], bool]:
    return lambda row: (
        row.execution_id == execution_id and row.type == "workflow_execution_completed"
    )


def logged_at_step(execution_id: str, step_id: str) -> Callable[[Logged], bool]:
    return lambda row: (
        row.execution_id == execution_id
        and row.type == "workflow_execution_update"
        and row.payload.get("current_step") == step_id
    )


# --- workflows ------------------------------------------------------------------------------


def chain(transforms: int) -> dict[str, Any]:
    """input -> t0 -> ... -> done: every step starts and completes in one commit."""
    names = [f"t{i}" for i in range(transforms)]
    following = [*names[1:], "done"]
    return workflow(
        step("input", "input", names[0], name="Input"),
        *(transform(n, f, {"at": n}) for n, f in zip(names, following, strict=True)),
        step("done", "output", name="Done", config={"values": {"steps": transforms}}),
    )


def through(*stops: tuple[str, str]) -> dict[str, Any]:
    """input -> (an HTTP step to each url, then a transform) ... -> done."""
    steps = [step("input", "input", stops[0][0], name="Input")]
    for n, (step_id, url) in enumerate(stops):
        after = f"after_{step_id}"
        following = stops[n + 1][0] if n + 1 < len(stops) else "done"
        steps += [http(step_id, after, url), transform(after, following, {"passed": step_id})]
    steps.append(step("done", "output", name="Done", config={"values": {"ok": True}}))
    return workflow(*steps)


# --- a gate: HTTP answers held until the test opens them -------------------------------------


class Gate:
    """Requests to `/<name>` wait until `open(name)`; `reached(name)` waits for one to arrive."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrived: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._opened: dict[str, threading.Event] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._opened.setdefault(name, threading.Event())

    def open(self, name: str) -> None:
        self._gate(name).set()

    def open_all(self) -> None:
        with self._lock:
            for opened in self._opened.values():
                opened.set()

    def hold(self, name: str) -> None:
        """A request arrived: wait for its gate (called by the server's threads)."""
        with self._lock:
            self.arrived[name] += 1
        self._gate(name).wait(HOLD_LIMIT)

    async def reached(self, name: str, patience: float = 60.0) -> None:
        await eventually(lambda: self.arrived[name] > 0, f"a request at gate {name}", patience)


class _GateServer(ThreadingHTTPServer):
    daemon_threads = True
    gate: Gate

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up hangs up on us: expected."""


class _GateHandler(BaseHTTPRequestHandler):
    server: _GateServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        name = urlsplit(self.path).path.strip("/")
        self.server.gate.hold(name)
        body = json.dumps({"gate": name}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def gates() -> Iterator[Gate]:
    server = _GateServer(("127.0.0.1", 0), _GateHandler)
    server.gate = Gate(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.gate
    finally:
        server.gate.open_all()
        server.shutdown()
        server.server_close()


# --- processes: `wfe worker` and `wfe serve` -------------------------------------------------


@pytest.fixture
def shared_broker() -> str:
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    return url


def process_settings(broker: str, effects: Effects, gate: Gate) -> Settings:
    """A queue of the test's own; steps may call the effects stub and the gate."""
    return server_settings(
        broker_url=broker,
        queue_name=unique_queue(),
        http_allowed_ports=frozenset({80, 443, effects.port, gate.port}),
    )


def serve_env(
    settings: Settings,
    database_url: str,
    directory: Path,
    port: int,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a `wfe serve` at 127.0.0.1:`port` that publishes to the test's queue."""
    env = engine_env(settings, database_url, directory)
    env.update(
        WFE_JWT_SECRET=SECRET,
        WFE_JWT_ISSUER=ISSUER,
        WFE_JWT_AUDIENCE=AUDIENCE,
        WFE_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        WFE_SHUTDOWN_GRACE_SECONDS="1",
        WFE_STREAM_HEARTBEAT_SECONDS="0.5",
    )
    env.update(extra or {})
    return env


async def serve(servers: Processes, patience: float = 60.0) -> subprocess.Popen[bytes]:
    """Starts `wfe serve` and waits until it says it is listening."""
    process = servers.start("serve")
    log = servers.log_dir / f"serve-{servers.started}.log"
    deadline = time.monotonic() + patience
    while LISTENING not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"wfe serve did not come up:\n{log_tails(servers.log_dir)}")
        await asyncio.sleep(0.05)
    return process


async def start_workers(workers: Processes, settings: Settings, count: int) -> list[str]:
    """`count` worker processes on the settings' queue, answering pings; their names."""
    names = [f"{settings.queue_name}-{n}" for n in range(count)]
    for name in names:
        workers.worker(f"--name={name}@%h")
    await asyncio.to_thread(wait_for_workers, create_app(settings), names)
    return names


def stop(settings: Settings, *groups: Processes) -> None:
    for group in groups:
        group.stop_all()
    purge_queue(settings.broker_url, settings.queue_name)


def two_ports() -> tuple[int, int]:
    while (ports := (free_port(), free_port()))[0] == ports[1]:
        pass
    return ports


def tasks_run(settings: Settings, names: Sequence[str], patience: float = 30.0) -> dict[str, int]:
    """Tasks each named worker has taken so far (Celery's own count), once all have answered."""
    control = create_app(settings).control
    taken: dict[str, int] = {}
    deadline = time.monotonic() + patience
    while set(taken) != set(names) and time.monotonic() < deadline:
        for node, info in (control.inspect(timeout=2.0).stats() or {}).items():
            name = node.split("@", 1)[0]
            if name in names:
                taken[name] = sum(info.get("total", {}).values())
    return taken


# --- 1. resuming under concurrent commits of two worker processes ----------------------------

RUNS = 20
TRANSFORMS = 4
# Each of the TRANSFORMS + 2 steps announces its start and its completion; one event as
# the execution is admitted, one as it ends.
EVENTS_PER_RUN = 2 * (TRANSFORMS + 2) + 2


@dataclass
class Reconnecting:
    """What a client that keeps dropping its stream received, and how it reconnected."""

    received: list[event_pb2.Event] = field(default_factory=list)
    calls: Counter[int] = field(default_factory=Counter)
    """Subscriptions made, by the index of the channel they went to."""
    cuts_during_load: int = 0
    """Calls dropped before every execution had finished."""


async def read_then_cancel(stream: Stream) -> event_pb2.Event | None:
    """Cancels the call while a read waits: the event that read returned first, if any."""
    reading = asyncio.ensure_future(next_event(stream, patience=60))
    await asyncio.sleep(0)  # the read is under way
    stream.cancel()
    await asyncio.wait([reading])
    if reading.cancelled():
        return None
    error = reading.exception()
    if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.CANCELLED:
        return None
    return reading.result()  # raises anything else


async def reconnecting(
    channels: Sequence[aio.Channel],
    tenant: str,
    topics: list[str],
    after: int,
    cuts: Sequence[int],
    done: Callable[[list[event_pb2.Event]], bool],
    load_over: asyncio.Event,
) -> Reconnecting:
    """Reads `topics` after event `after`, dropping the call after each number of events of
    `cuts` in turn and subscribing again after the last event received, on the next channel.

    A cut of 0 drops the call before reading; a cut of -k reads k - 1 events and drops the
    call while the k-th read waits (that read's event counts if it came).
    """
    client = Reconnecting()
    turn = 0
    while not done(client.received):
        cut = cuts[turn % len(cuts)]
        channel = turn % len(channels)
        resume = client.received[-1].event_id if client.received else after
        stream = subscribe(channels[channel], tenant, topics, resume, ["admin"])
        client.calls[channel] += 1
        turn += 1
        for _ in range(cut if cut >= 0 else -cut - 1):
            client.received.append(await next_event(stream, patience=60))
            if done(client.received):
                break
        if cut < 0 and not done(client.received):
            last = await read_then_cancel(stream)
            if last is not None:
                client.received.append(last)
        if not load_over.is_set():
            client.cuts_during_load += 1
        stream.cancel()
    return client


@pytest.mark.postgres
async def test_resume_under_concurrent_commits_from_two_worker_processes_never_skips_or_repeats_an_id(  # noqa: E501
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path, shared_broker: str
) -> None:
    """Two `wfe worker` processes commit 20 executions' events concurrently while two clients
    drop their streams again and again (after 0 to 21 events, some with a read in flight) and
    resume after the last id received, alternating between an in-process server and a
    `wfe serve` process. Each receives what uninterrupted subscriptions receive, which is
    what the log holds afterwards: the same ids, in the same order, each once."""
    names = [f"wfe-resume-{uuid.uuid4().hex[:8]}-{n}" for n in range(2)]
    async with (
        engine_stack(
            postgres,
            effects,
            tmp_path / "stack",
            broker=shared_broker,
            workers=[(f"--name={name}@%h",) for name in names],
        ) as stack,
        serve_process(
            postgres,
            effects,
            tmp_path / "second",
            broker=shared_broker,
            extra_env={"WFE_STREAM_HEARTBEAT_SECONDS": "0.5"},
        ) as (_, second, _),
    ):
        await asyncio.to_thread(wait_for_workers, create_app(stack.settings), names)
        tenant = await create_tenant(postgres, "enterprise")
        workflow_id = await active_workflow(stack.channel, tenant, chain(TRANSFORMS))

        def finished(found: list[event_pb2.Event]) -> bool:
            return sum(map(ends, found)) == RUNS

        from_zero = subscribe(stack.channel, tenant, ["all_executions"], 0, ["admin"])
        from_now = subscribe(second, tenant, ["all_executions"], None, ["admin"])
        assert (await from_now.read()).event.WhichOneof("payload") == "heartbeat"  # subscribed
        load_over = asyncio.Event()
        channels = [stack.channel, second]
        executions_only = asyncio.create_task(
            reconnecting(
                channels,
                tenant,
                ["all_executions"],
                0,
                [1, 0, 2, -3, 5, 8, -1, 13, 3, 21],
                finished,
                load_over,
            )
        )
        everything = asyncio.create_task(
            reconnecting(
                channels[::-1],
                tenant,
                ["all_executions", "all_workflows"],
                0,
                [7, -2, 1, 4, 0, 11, -6, 2],
                finished,
                load_over,
            )
        )
        started = await asyncio.gather(
            *(start(stack.channel, tenant, workflow_id, {}) for _ in range(RUNS))
        )
        records = await wait_all_finished(
            stack.channel, tenant, [s.id for s in started], patience=120, diagnostics=stack.logs
        )
        load_over.set()
        assert {r.status for r in records} == {execution_pb2.EXECUTION_STATUS_COMPLETED}

        uninterrupted = await read_all(from_zero, finished)
        live = await read_all(from_now, finished)
        cut = await asyncio.wait_for(executions_only, 120)
        cut_everything = await asyncio.wait_for(everything, 120)
        from_zero.cancel()
        from_now.cancel()

        logged = await log_of(stack.database, tenant)
        of_executions = [row for row in logged if row.execution_id is not None]
        assert Counter(row.execution_id for row in of_executions) == {
            s.id: EVENTS_PER_RUN for s in started
        }
        for found in (uninterrupted, live, cut.received, cut_everything.received):
            assert_strictly_increasing(found)
        assert ids(uninterrupted) == [row.id for row in of_executions]
        assert live == uninterrupted  # from "now", on the other server: the same messages
        assert cut.received == uninterrupted
        assert ids(cut_everything.received) == [row.id for row in logged]
        assert [e for e in cut_everything.received if e.execution_id] == uninterrupted

        # The commits were concurrent: both processes ran steps, and the executions' events
        # interleave in the log (one after another they would change execution 19 times).
        taken = await asyncio.to_thread(tasks_run, stack.settings, names)
        assert set(taken) == set(names) and min(taken.values()) > 0, taken
        changes = sum(a.execution_id != b.execution_id for a, b in pairwise(of_executions))
        assert changes > RUNS - 1, changes
        # The clients were cut many times, on both servers, while the workers committed.
        for client in (cut, cut_everything):
            assert sorted(client.calls) == [0, 1] and min(client.calls.values()) >= 10, client
            assert client.cuts_during_load >= 3, client.cuts_during_load


# --- 2. a worker's events reach a subscriber on another server process ------------------------


@pytest.mark.postgres
async def test_events_written_by_a_worker_reach_a_subscriber_on_a_second_server_process(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path, shared_broker: str
) -> None:
    """Two `wfe serve` processes on one database, a `wfe worker` process: an execution started
    through server A reaches subscribers of server B while it runs (its step is held at a
    gate), then to its end; server B reads the log only when woken by the worker's NOTIFY."""
    with gates() as gate:
        settings = process_settings(shared_broker, effects, gate)
        url = postgres.service_url
        port_a, port_b = two_ports()
        workers = Processes(engine_env(settings, url, tmp_path / "workers"), tmp_path / "workers")
        servers_a = Processes(serve_env(settings, url, tmp_path / "a", port_a), tmp_path / "a")
        servers_b = Processes(
            serve_env(settings, url, tmp_path / "b", port_b, WAKE_UPS_ONLY), tmp_path / "b"
        )
        database = TenantDatabase(url, pool_size=2, max_overflow=0)
        try:
            server_a, server_b, _ = await asyncio.gather(
                serve(servers_a), serve(servers_b), start_workers(workers, settings, 1)
            )
            assert server_a.pid != server_b.pid
            tenant = await create_tenant(postgres, "enterprise")
            document = through(("hold", gate.url("hold")))
            async with (
                aio.insecure_channel(f"127.0.0.1:{port_a}") as first,
                aio.insecure_channel(f"127.0.0.1:{port_b}") as second,
            ):
                workflow_id = await active_workflow(first, tenant, document)
                whole = subscribe(second, tenant, ["all_executions"], None, ["admin"])
                assert (await whole.read()).event.WhichOneof("payload") == "heartbeat"
                started = await start(first, tenant, workflow_id, {})
                await gate.reached("hold")
                # Live: the execution cannot end before the test opens the gate.
                before = await read_until(whole, at_step("hold"), patience=30)
                own = subscribe(second, tenant, [f"execution:{started.id}"], 0)
                own_before = await read_until(own, at_step("hold"), patience=30)
                watching = watch_call(second, tenant, started.id)
                snapshot = (await watching.read()).snapshot
                assert (snapshot.status, snapshot.current_step) == (IN_PROGRESS, "hold")
                gate.open("hold")
                after = await read_until(whole, ends, patience=30)
                own_after = await read_until(own, ends, patience=30)
                watched = [await next_watched(watching, patience=30)]
                while not ends(watched[-1]):
                    watched.append(await next_watched(watching, patience=30))
                assert await asyncio.wait_for(watching.read(), 10) is aio.EOF
                assert (await get(second, tenant, started.id)).status == (
                    execution_pb2.EXECUTION_STATUS_COMPLETED
                )
                whole.cancel()
                own.cancel()
            logged = [row.id for row in await log_of(database, tenant) if row.execution_id]
            assert_strictly_increasing(before + after)
            assert ids(before + after) == logged
            assert {e.execution_id for e in before + after} == {started.id}
            assert own_before + own_after == before + after
            assert watched == after  # the events the snapshot did not reflect
            assert after[-1].workflow_execution_completed.status == "completed"
            assert [e.workflow_step_completed.step_id for e in after][:1] == ["hold"]
        finally:
            stop(settings, servers_a, servers_b, workers)
            await database.dispose()


# --- 3. resuming across a server restart ------------------------------------------------------


@pytest.mark.postgres
async def test_watch_resumes_across_a_wfe_serve_restart_at_the_same_address(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path, shared_broker: str
) -> None:
    """A `wfe serve` is SIGTERMed mid-execution: its WatchExecution and Subscribe streams end
    with UNAVAILABLE. The worker goes on committing while no server runs; a new `wfe serve`
    comes up at the same address, and the client, on the same channel, subscribes after the
    last id it received: it gets the events committed meanwhile, then the live ones, once
    each, to the end, as an uninterrupted read of the log has them."""
    with gates() as gate:
        settings = process_settings(shared_broker, effects, gate)
        url = postgres.service_url
        port = free_port()
        workers = Processes(engine_env(settings, url, tmp_path / "workers"), tmp_path / "workers")
        servers = Processes(serve_env(settings, url, tmp_path / "serve", port), tmp_path / "serve")
        database = TenantDatabase(url, pool_size=2, max_overflow=0)
        try:
            first, _ = await asyncio.gather(serve(servers), start_workers(workers, settings, 1))
            tenant = await create_tenant(postgres, "enterprise")
            document = through(*((name, gate.url(name)) for name in ("g0", "g1", "g2")))
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                workflow_id = await active_workflow(channel, tenant, document)
                started = await start(channel, tenant, workflow_id, {})
                topic = [f"execution:{started.id}"]
                whole = subscribe(channel, tenant, topic, 0)
                await gate.reached("g0")
                watching = watch_call(channel, tenant, started.id)
                snapshot = (await watching.read()).snapshot
                assert (snapshot.status, snapshot.current_step) == (IN_PROGRESS, "g0")
                gate.open("g0")
                watched = [await next_watched(watching)]
                while not at_step("g1")(watched[-1]):
                    watched.append(await next_watched(watching))
                whole_before = await read_until(whole, at_step("g1"))
                await gate.reached("g1")

                first.send_signal(signal.SIGTERM)
                with pytest.raises(grpc.RpcError) as watch_ended:
                    await next_watched(watching)
                with pytest.raises(grpc.RpcError) as subscription_ended:
                    await next_event(whole)
                for caught in (watch_ended, subscription_ended):
                    code, reason, metadata = error_info(caught.value)
                    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
                    assert metadata.get("retry") == "resume"
                assert await asyncio.to_thread(first.wait, 30) == 0

                gate.open("g1")  # the worker goes on with no server running
                committed_meanwhile = await until_logged(
                    database, tenant, logged_at_step(started.id, "g2"), "g2 started"
                )
                await gate.reached("g2")
                await serve(servers)  # the same address
                await asyncio.wait_for(channel.channel_ready(), 30)
                resumed = subscribe(channel, tenant, topic, watched[-1].event_id)
                resumed_whole = subscribe(channel, tenant, topic, whole_before[-1].event_id)
                replayed = await read_until(resumed, at_step("g2"))
                whole_replayed = await read_until(resumed_whole, at_step("g2"))
                gate.open("g2")
                live = await read_until(resumed, ends)
                whole_live = await read_until(resumed_whole, ends)
                from_log = await read_until(subscribe(channel, tenant, topic, 0), ends)
                resumed.cancel()
                resumed_whole.cancel()
            logged = [row.id for row in await log_of(database, tenant) if row.execution_id]
            assert ids(from_log) == logged
            assert_strictly_increasing(watched + replayed + live)
            assert whole_before + whole_replayed + whole_live == from_log
            first_watched = ids(from_log).index(watched[0].event_id)
            assert watched + replayed + live == from_log[first_watched:]
            assert watched[0].workflow_step_completed.step_id == "g0"  # after the snapshot
            # What the restarted server replayed was committed while no server ran.
            assert replayed[-1].event_id == committed_meanwhile.id
            assert [e.workflow_step_completed.step_id for e in replayed][:1] == ["g1"]
            assert live[-1].workflow_execution_completed.status == "completed"
        finally:
            stop(settings, servers, workers)
            await database.dispose()


async def test_watch_resumes_across_a_server_restart(
    database: TenantDatabase, engine: Publisher, new_tenant: NewTenant, effects: Effects
) -> None:
    """In-process, on SQLite (embedded engine) and PostgreSQL (a worker process): a server
    is stopped while an execution it streams runs; the watch ends with UNAVAILABLE. Once the
    engine has committed more with no server up, a new server on the same database serves a
    subscription after the last id watched: the rest of the execution, each event once."""
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    tenant = await new_tenant("enterprise")
    document = through(("slow1", effects.url(sleep=2)), ("slow2", effects.url(sleep=1)))
    running: list[RunningServer] = [
        await start_server(server_settings(), database, verifier, engine)
    ]
    stopped: set[int] = set()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running[0].port}") as channel:
            workflow_id = await active_workflow(channel, tenant, document)
            started = await start(channel, tenant, workflow_id, {})
            await wait_until(
                channel,
                tenant,
                started.id,
                frozenset({IN_PROGRESS}),
                where=lambda e: e.current_step == "slow1",
            )
            watching = watch_call(channel, tenant, started.id)
            snapshot = (await watching.read()).snapshot
            assert snapshot.status == IN_PROGRESS
            watched = [await next_watched(watching)]  # slow1 completed, the first change unseen
            stopping = asyncio.create_task(running[0].stop(1.0))
            stopped.add(0)
            with pytest.raises(grpc.RpcError) as caught:
                while True:  # what the engine committed before the stop may still come
                    watched.append(await next_watched(watching))
            assert error_info(caught.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
            await asyncio.wait_for(stopping, 30)
        committed_meanwhile = await until_logged(
            database, tenant, completed_event(started.id), "the execution's completion"
        )
        running.append(await start_server(server_settings(), database, verifier, engine))
        async with aio.insecure_channel(f"127.0.0.1:{running[1].port}") as channel:
            topic = [f"execution:{started.id}"]
            resumed = subscribe(channel, tenant, topic, watched[-1].event_id)
            rest = await read_until(resumed, ends)
            from_log = await read_until(subscribe(channel, tenant, topic, 0), ends)
            resumed.cancel()
        logged = [row.id for row in await log_of(database, tenant) if row.execution_id]
        assert ids(from_log) == logged
        assert_strictly_increasing(watched + rest)
        first_watched = ids(from_log).index(watched[0].event_id)
        assert first_watched > 0 and watched + rest == from_log[first_watched:]
        assert committed_meanwhile.id in ids(rest)
        assert rest[-1].workflow_execution_completed.status == "completed"
    finally:
        for n, server in enumerate(running):
            if n not in stopped:
                await server.stop(0)
