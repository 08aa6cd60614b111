"""The operations figures: (l) scale-out and (m) the cost of metrics and tracing.

Both measure (a)'s workload, steps per second of N `dispatched_steps()` executions
started by 16 callers, from just before the first call to the last `completed_at`, on
engines that share the stack's database and broker, each on a queue of its own:

- `system`, the stack's own: one `wfe serve`, one `wfe worker` of `--concurrency` C (the
  default 2), one `wfe beat`; no metrics endpoint, no tracing;
- `split` (l): two `wfe serve`, two `wfe worker`s of C/2 each (the same C in all), one
  `wfe beat`; the starts go round-robin over the two servers' channels;
- `observed` (m): the `system`'s shape, each process with a Prometheus endpoint of its own
  (`WFE_METRICS_ADDRESS`) and tracing on through the standard OpenTelemetry variables, its
  spans exported over OTLP/HTTP to `Sink`, a receiver in a thread of the bench; each of
  its endpoints is scraped once in each of its runs, while the workers run.

(l) is `split` ÷ `system` and (m) `observed` ÷ `system`, each pair run back to back in the
round's order. All the (l) rounds run first, with `split` up, then `split` is stopped
and `observed` started for the (m) rounds: each engine holds its pools' connections
while it is up, and three at once ran PostgreSQL out of `max_connections` on the shared
machine. Each run reports the most client backends PostgreSQL had at once, and any
connection PostgreSQL refused the side's processes (read from their logs).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, cast

import httpx
from grpc import aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import cpu, scenarios
from bench.floors import CLIENT_OPTIONS
from bench.harness import BenchTenant, Engine, Stack
from bench.report import Metric
from tests.engine_stack import wait_for_workers
from tests.execution_helpers import struct
from wfe.v1 import execution_pb2, execution_pb2_grpc

CALLERS: Final = 16
TRACES_PATH: Final = "/v1/traces"


def metrics() -> dict[str, Metric]:
    return {
        "l": Metric(
            "l",
            "(a)'s steps/s, 2 servers + 2 workers ÷ 1 + 1, same worker concurrency",
            "steps/s",
            "steps/s",
            0.9,
            True,
        ),
        "m": Metric(
            "m",
            "(a)'s steps/s, metrics and tracing on ÷ off",
            "steps/s",
            "steps/s",
            0.9,
            True,
        ),
    }


# The OTLP/HTTP sink.


@dataclass(frozen=True)
class SinkCounts:
    """What the sink received: requests and body bytes by path, spans by service name."""

    requests: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    spans: Counter[str] = field(default_factory=Counter)
    undecoded: int = 0
    """Trace requests whose body did not parse as an `ExportTraceServiceRequest`."""

    def __sub__(self, earlier: SinkCounts) -> SinkCounts:
        return SinkCounts(
            self.requests - earlier.requests,
            self.bytes - earlier.bytes,
            self.spans - earlier.spans,
            self.undecoded - earlier.undecoded,
        )

    def describe(self) -> str:
        if not self.requests:
            return "0 requests"
        paths = ", ".join(
            f"{self.requests[path]} POST {path} ({self.bytes[path]:,} bytes)"
            for path in sorted(self.requests)
        )
        spans = ", ".join(f"{service} {n:,}" for service, n in sorted(self.spans.items()))
        undecoded = f"; {self.undecoded} undecodable" if self.undecoded else ""
        return f"{paths}; spans: {sum(self.spans.values()):,} ({spans or 'none'}){undecoded}"


def _spans_by_service(body: bytes) -> Counter[str]:
    request = ExportTraceServiceRequest.FromString(body)
    spans: Counter[str] = Counter()
    for resource_spans in request.resource_spans:
        service = next(
            (
                attribute.value.string_value
                for attribute in resource_spans.resource.attributes
                if attribute.key == "service.name"
            ),
            "(no service.name)",
        )
        spans[service] += sum(len(scope.spans) for scope in resource_spans.scope_spans)
    return spans


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    sink: Sink


class _SinkHandler(BaseHTTPRequestHandler):
    """Takes any POST, answers 200 with an empty body (an empty export response)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a collector answers

    def do_POST(self) -> None:
        body = self._body()
        encoding = self.headers.get("Content-Encoding", "").lower()
        cast(_SinkServer, self.server).sink.received(self.path, body, encoding)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args: object) -> None:
        pass


class Sink:
    """A tiny OTLP/HTTP receiver in a thread of its own: counts what arrives, keeps nothing.

    The exporters post to `<endpoint>/v1/traces` (and `/v1/metrics`, `/v1/logs` if those
    signals are on); every request is counted by path with its bytes, and a trace
    request's spans are counted by their resource's `service.name`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._bytes: Counter[str] = Counter()
        self._spans: Counter[str] = Counter()
        self._undecoded = 0
        self._server = _SinkServer(("127.0.0.1", 0), _SinkHandler)
        self._server.sink = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-sink", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def received(self, path: str, body: bytes, encoding: str) -> None:
        spans: Counter[str] = Counter()
        undecoded = 0
        if path.split("?", 1)[0] == TRACES_PATH:
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                spans = _spans_by_service(body)
            except Exception:  # counted, not fatal: the sink only counts
                undecoded = 1
        with self._lock:
            self._requests[path] += 1
            self._bytes[path] += len(body)
            self._spans.update(spans)
            self._undecoded += undecoded

    def counts(self) -> SinkCounts:
        """The counts so far."""
        with self._lock:
            return SinkCounts(
                Counter(self._requests), Counter(self._bytes), Counter(self._spans), self._undecoded
            )


# The engines.


def free_port(taken: set[int]) -> int:
    """A loopback port free just now, and not one handed out already."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


@dataclass(frozen=True)
class Endpoint:
    """One observed process's Prometheus endpoint."""

    role: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


def observed_environment(sink: Sink, endpoints: list[Endpoint]) -> Callable[[str], dict[str, str]]:
    """`Stack.start_engine`'s `extra_env` for (m): a metrics port per process (recorded in
    `endpoints`), and tracing to the sink through the standard OpenTelemetry variables."""
    taken: set[int] = set()

    def variables(role: str) -> dict[str, str]:
        endpoints.append(Endpoint(role, free_port(taken)))
        return {
            "WFE_METRICS_ADDRESS": f"127.0.0.1:{endpoints[-1].port}",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_SERVICE_NAME": f"wfe-{role}",
        }

    return variables


def halves(concurrency: int) -> list[int]:
    """`concurrency` over two workers, as evenly as it goes: the same total as one worker."""
    if concurrency < 2:
        raise SystemExit("(l) splits the worker concurrency over two workers: --concurrency >= 2")
    return [concurrency - concurrency // 2, concurrency // 2]


def worker_names(engine: Engine) -> list[str]:
    """The node names (before the @) of an engine's workers, as `wait_for_workers` takes them."""
    if engine.name == "system":
        return [engine.queue]
    count = sum(1 for name in engine.processes if "-worker-" in name)
    return [f"{engine.queue}-{number}" for number in range(1, count + 1)]


async def _until_answering(endpoints: Sequence[Endpoint], patience: float = 90.0) -> None:
    ends = time.monotonic() + patience
    async with httpx.AsyncClient(timeout=2.0) as client:
        for endpoint in endpoints:
            while True:
                try:
                    (await client.get(endpoint.url)).raise_for_status()
                    break
                except httpx.HTTPError as error:
                    if time.monotonic() > ends:
                        raise RuntimeError(f"{endpoint.role} metrics: {error}") from error
                    await asyncio.sleep(0.2)


async def ready(stack: Stack, engine: Engine, warmup: int) -> None:
    """Wait until the stack's system's and `engine`'s workers answer a ping, then warm both
    alike (`warm`), the system first."""
    names = worker_names(stack.engine) + worker_names(engine)
    await asyncio.to_thread(wait_for_workers, stack.floor, names)
    for each in (stack.engine, engine):
        await warm(stack, each, warmup)


async def start_spread(
    targets: Sequence[str], tenant: BenchTenant, count: int, callers: int = CALLERS
) -> Counter[str]:
    """`scenarios.start_all` over several servers: `count` starts from `callers` concurrent
    callers, each call on the next server's channel in turn; the starts by server."""
    channels = [aio.insecure_channel(target, options=CLIENT_OPTIONS) for target in targets]
    stubs = itertools.cycle(
        list(zip(targets, map(execution_pb2_grpc.ExecutionServiceStub, channels), strict=True))
    )
    request = execution_pb2.StartExecutionRequest(
        workflow_id=tenant.workflow_id, input=struct({"name": "bench"})
    )
    remaining = iter(range(count))
    spread: Counter[str] = Counter()

    async def caller() -> None:
        for _ in remaining:
            target, stub = next(stubs)
            await stub.StartExecution(request, metadata=tenant.metadata)
            spread[target] += 1

    try:
        await asyncio.gather(*(caller() for _ in range(callers)))
    finally:
        for channel in channels:
            await channel.close()
    return spread


async def warm(stack: Stack, engine: Engine, executions: int) -> None:
    """`scenarios.warm_up` through `engine`'s servers."""
    plain = await scenarios.throughput_tenant(stack)
    dispatched = await scenarios.throughput_tenant(stack, scenarios.dispatched_steps())
    slow = await stack.tenant(
        scenarios.slow_steps(stack), max_concurrent_executions=scenarios.UNLIMITED
    )
    await asyncio.gather(
        start_spread(engine.targets, plain, executions),
        start_spread(engine.targets, dispatched, executions),
        start_spread(engine.targets, slow, 2 * executions),
    )
    for tenant, count in ((plain, executions), (dispatched, executions), (slow, 2 * executions)):
        await stack.observer.wait(tenant.id, count, patience=180.0)
    await stack.observer.drain()


# One side's run.

REFUSALS: Final = (b"remaining connection slots are reserved", b"too many clients")
"""What PostgreSQL answers a connection past `max_connections`, as the processes log it."""


def refusals(stack: Stack, engine: Engine) -> int:
    """Connections PostgreSQL refused the engine's processes so far, from their logs."""
    total = 0
    for name in engine.processes:
        with suppress(OSError):
            text = (stack.options.log_dir / f"{name}.log").read_bytes()
            total += sum(text.count(phrase) for phrase in REFUSALS)
    return total


@dataclass
class Backends:
    """The most client backends PostgreSQL had at once while a run went on."""

    bench: int = 0
    """On the bench's database."""
    server: int = 0
    """On the whole server, other users' included."""


async def _sample_backends(stack: Stack, peak: Backends, interval: float = 0.5) -> None:
    while True:
        cursor = await stack.stats.execute(
            "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend'",
            (stack.database_name,),
        )
        row = await cursor.fetchone()
        assert row is not None
        peak.bench, peak.server = max(peak.bench, int(row[0])), max(peak.server, int(row[1]))
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class Run:
    """One side's run: (a)'s steps over first start to last completion, and its CPU."""

    steps: int
    seconds: float
    starts_seconds: float
    cpu_seconds: float
    """The engine's own processes (serve, workers and their children, beat); not PostgreSQL."""
    starts: Counter[str]
    """Starts by server."""
    backends: Backends
    refused: int
    """Connections PostgreSQL refused the engine's processes during the run."""

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    def describe(self) -> str:
        servers = " + ".join(str(n) for _, n in sorted(self.starts.items()))
        refused = (
            f"; PostgreSQL REFUSED {self.refused} of its connections (max_connections)"
            if self.refused
            else ""
        )
        return (
            f"{self.steps} steps in {self.seconds:.2f} s (starts {self.starts_seconds:.2f} s, "
            f"by server {servers}); CPU of its processes "
            f"{self.cpu_seconds * 1000 / self.steps:.2f} ms/step; client backends at most "
            f"{self.backends.bench} on the bench database, {self.backends.server} on the "
            f"server{refused}"
        )


async def steps_per_second(
    stack: Stack,
    engine: Engine,
    executions: int,
    meanwhile: Callable[[], Awaitable[object]] | None = None,
) -> Run:
    """(a)'s system side through `engine`: `executions` of `dispatched_steps()` on a new
    tenant with no concurrency limit, first start to last completion. `meanwhile` runs
    once the starts have returned, inside the window."""
    tenant = await scenarios.throughput_tenant(stack, scenarios.dispatched_steps())
    leaders = {stack.spawned.pids[name] for name in engine.processes}
    refused = refusals(stack, engine)
    peak = Backends()
    sampler = asyncio.create_task(_sample_backends(stack, peak))
    cpu_before = cpu.sessions_seconds(leaders)
    began = time.time()
    started = 0.0
    spread: Counter[str] = Counter()

    async def starts() -> None:
        nonlocal started, spread
        spread = await start_spread(engine.targets, tenant, executions)
        started = time.time() - began
        if meanwhile is not None:
            await meanwhile()

    try:
        await asyncio.gather(starts(), stack.observer.wait(tenant.id, executions, patience=300.0))
    finally:
        sampler.cancel()
        with suppress(asyncio.CancelledError):
            await sampler
    finished = (await stack.observer.last_completion(tenant.id)).timestamp()
    await stack.observer.release()
    spent = cpu.sessions_seconds(leaders) - cpu_before
    return Run(
        3 * executions,
        finished - began,
        started,
        spent,
        spread,
        peak,
        refusals(stack, engine) - refused,
    )


async def _in_order(
    system_first: bool,
    floor: Callable[[], Awaitable[Run]],
    system: Callable[[], Awaitable[Run]],
) -> tuple[Run, Run]:
    if system_first:
        second = await system()
        return await floor(), second
    first = await floor()
    return first, await system()


def _round_note(number: int, labels: tuple[str, str], runs: tuple[Run, Run]) -> str:
    per_step = ", ".join(
        f"{label} {run.cpu_seconds * 1000 / run.steps:.2f}"
        for label, run in zip(labels, runs, strict=True)
    )
    refused = "; ".join(
        f"{label}'s processes were refused {run.refused} PostgreSQL connections "
        "(max_connections reached; its steps retried)"
        for label, run in zip(labels, runs, strict=True)
        if run.refused
    )
    return (
        f"round {number + 1}: CPU ms per step of the wfe processes (PostgreSQL not counted) "
        f"{per_step}" + (f"; {refused}" if refused else "")
    )


def _round_line(number: int, rounds: int, system_first: bool, first: str, second: str) -> None:
    order = f"{second if system_first else first} first"
    print(f"round {number + 1}/{rounds} ({order})", flush=True)


# The figures.


async def scale_out(
    stack: Stack, rounds: int, executions: int, warmup: int, figure: Metric
) -> None:
    """(l): `rounds` rounds of the stack's system (1 + 1) beside `split` (2 + 2).

    The split engine runs only for these rounds, so that its connections and the
    observed engine's are never open at once (the stack shares PostgreSQL's
    `max_connections` with whatever else the machine runs).
    """
    split = stack.start_engine("split", servers=2, concurrencies=halves(stack.options.concurrency))
    try:
        await ready(stack, split, warmup)
        print("(l) 2 + 2 engine up and warm", flush=True)
        for number in range(rounds):
            system_first = number % 2 == 1
            _round_line(number, rounds, system_first, "1 + 1", "2 + 2")
            alone, both = await _in_order(
                system_first,
                lambda: steps_per_second(stack, stack.engine, executions),
                lambda: steps_per_second(stack, split, executions),
            )
            print("  " + figure.describe(figure.add(both.rate, alone.rate)), flush=True)
            print(f"  (l) 1 + 1: {alone.describe()}", flush=True)
            print(f"  (l) 2 + 2: {both.describe()}", flush=True)
            figure.notes.append(_round_note(number, ("1 + 1", "2 + 2"), (alone, both)))
    finally:
        stack.stop_engine(split)
    shape = " + ".join(str(c) for c in halves(stack.options.concurrency))
    figure.notes.append(
        f"{executions} executions of (a)'s `dispatched_steps()` a side, {CALLERS} callers; "
        f"1 + 1: the stack's serve, one worker of concurrency {stack.options.concurrency} "
        f"and beat; 2 + 2: two serve (the starts round-robin over both), two workers of "
        f"concurrency {shape}, one beat, on a queue of their own"
    )


async def observability(
    stack: Stack, sink: Sink, rounds: int, executions: int, warmup: int, figure: Metric
) -> None:
    """(m): `rounds` rounds of the stack's system (off) beside `observed` (on)."""
    endpoints: list[Endpoint] = []
    observed = stack.start_engine(
        "observed",
        servers=1,
        concurrencies=[stack.options.concurrency],
        extra_env=observed_environment(sink, endpoints),
    )
    try:
        await _until_answering(endpoints)
        await ready(stack, observed, warmup)
        print(f"(m) observed engine up and warm; OTLP sink on {sink.endpoint}", flush=True)
        for number in range(rounds):
            system_first = number % 2 == 1
            _round_line(number, rounds, system_first, "off", "on")
            scraped: list[Scrape] = []

            async def scraping(into: list[Scrape] = scraped) -> None:
                into.extend(await scrape(endpoints))

            before = sink.counts()
            off, on = await _in_order(
                system_first,
                lambda: steps_per_second(stack, stack.engine, executions),
                lambda: steps_per_second(stack, observed, executions, scraping),
            )
            received = sink.counts() - before
            print("  " + figure.describe(figure.add(on.rate, off.rate)), flush=True)
            print(f"  (m) off: {off.describe()}", flush=True)
            print(f"  (m) on: {on.describe()}", flush=True)
            print(f"  (m) scraped: {'; '.join(s.describe() for s in scraped)}", flush=True)
            print(f"  (m) OTLP sink during the pair: {received.describe()}", flush=True)
            figure.notes.append(
                _round_note(number, ("off", "on"), (off, on))
                + f"; OTLP sink during the pair: {received.describe()}"
            )
    finally:
        stack.stop_engine(observed)
    figure.notes.append(
        f"{executions} executions of (a)'s `dispatched_steps()` a side, {CALLERS} callers; "
        "on: serve, worker and beat each with WFE_METRICS_ADDRESS (each endpoint scraped "
        "once a run, inside the window) and OTEL_TRACES_EXPORTER=otlp over http/protobuf to "
        "the bench's sink; off: the stack's system, no such variable set"
    )


@dataclass(frozen=True)
class Scrape:
    role: str
    status: int
    size: int
    samples: int
    rpcs: float
    steps: float
    error: str = ""

    def describe(self) -> str:
        if self.error:
            return f"{self.role} failed ({self.error})"
        return (
            f"{self.role} {self.status}, {self.size:,} bytes, {self.samples} samples "
            f"(RPCs {self.rpcs:.0f}, steps {self.steps:.0f})"
        )


def _sample_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def scrape(endpoints: Sequence[Endpoint]) -> list[Scrape]:
    """GET /metrics of every endpoint once, as a Prometheus server would."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        answers = await asyncio.gather(
            *(client.get(endpoint.url) for endpoint in endpoints), return_exceptions=True
        )
    scraped = []
    for endpoint, answer in zip(endpoints, answers, strict=True):
        if isinstance(answer, BaseException):
            scraped.append(Scrape(endpoint.role, 0, 0, 0, 0, 0, type(answer).__name__))
            continue
        text = answer.text
        samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        scraped.append(
            Scrape(
                endpoint.role,
                answer.status_code,
                len(answer.content),
                samples,
                _sample_sum(text, "wfe_rpc_requests_total"),
                _sample_sum(text, "wfe_step_duration_seconds_count"),
            )
        )
    return scraped
