"""Prometheus metrics: what every process measures, and the endpoint that serves it.

Labels are bounded: a method, a code, a status, a step type, a tier — never a tenant id
unless the operator opts in (`WFE_METRICS_TENANT_LABELS`), since one series per tenant
is what makes a Prometheus server fall over.

A `wfe worker` runs its tasks in forked processes: it sets `PROMETHEUS_MULTIPROC_DIR`
before anything imports the client (`prepare_multiprocess`), each child writes its samples
to files there, and the parent's endpoint adds them up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the client loads with the first sample: a process that records none
    # (a validation worker, a client command) never pays for its import
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

MULTIPROCESS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
STEP_BUCKETS: Final = (0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0)
LAG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)


class Metrics:
    """The metric families of one process."""

    def __init__(self, registry: CollectorRegistry, *, tenant_labels: bool = False) -> None:
        from prometheus_client import Counter, Histogram

        self.tenant_labels = tenant_labels
        by_tenant = ("tenant",) if tenant_labels else ()
        self.rpc_requests = Counter(
            "wfe_rpc_requests",
            "gRPC calls answered, by method and status code.",
            ("method", "code"),
            registry=registry,
        )
        self.rpc_duration = Histogram(
            "wfe_rpc_duration_seconds",
            "Time to answer a gRPC call (a stream: its whole life), by method.",
            ("method",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.executions_started = Counter(
            "wfe_executions_started",
            "Executions started (a rerun included), by tier.",
            ("tier", *by_tenant),
            registry=registry,
        )
        self.executions_finished = Counter(
            "wfe_executions_finished",
            "Executions that reached a final status, by tier and status.",
            ("tier", "status", *by_tenant),
            registry=registry,
        )
        self.step_duration = Histogram(
            "wfe_step_duration_seconds",
            "Step attempts from start to end, by step type, tier and outcome.",
            ("step_type", "tier", "outcome", *by_tenant),
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.dispatch_lag = Histogram(
            "wfe_dispatch_lag_seconds",
            "From the time a step attempt is due to the time it starts, by tier.",
            ("tier", *by_tenant),
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.sweeper_republished = Counter(
            "wfe_sweeper_republished",
            "Step tasks the sweeper published again (overdue, or their lease ran out).",
            registry=registry,
        )
        self.lease_takeovers = Counter(
            "wfe_lease_takeovers",
            "Running steps taken over after their worker's lease ran out.",
            registry=registry,
        )
        self.gateway_requests = Counter(
            "wfe_gateway_requests",
            "HTTP requests the gateway answered, by method and status.",
            ("method", "status"),
            registry=registry,
        )
        self.gateway_duration = Histogram(
            "wfe_gateway_request_duration_seconds",
            "Time to answer an HTTP request at the gateway, by method.",
            ("method",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


GAUGES: Final = {
    "wfe_queue_depth": "Step tasks waiting in the broker, by queue.",
    "wfe_admission_queue_length": "Executions queued for a concurrency slot, by tier.",
    "wfe_stream_subscribers": "Live event streams open on this server.",
}
"""Read when scraped, from the state they describe, by the processes that know it."""

_lock = threading.Lock()
_metrics: Metrics | None = None
_tenant_labels = False


def configure(*, tenant_labels: bool) -> None:
    """Set the label policy; call before the first `metrics()` of the process."""
    global _tenant_labels
    _tenant_labels = tenant_labels


def metrics() -> Metrics:
    """This process's metric families, made on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import REGISTRY

            _metrics = Metrics(REGISTRY, tenant_labels=_tenant_labels)
        return _metrics


def names() -> frozenset[str]:
    """Every metric name the service exports, without Prometheus's suffixes."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    families = Metrics(CollectorRegistry(auto_describe=False))
    made = {
        value._name for value in vars(families).values() if isinstance(value, Counter | Histogram)
    }
    return frozenset(made | set(GAUGES))


def tenant_label(labels: dict[str, str], tenant: str) -> dict[str, str]:
    """`labels` with the tenant's id added when the operator opted in."""
    return {**labels, "tenant": tenant} if metrics().tenant_labels else labels


Reader = Callable[[], Iterable[tuple[tuple[str, ...], float]]]
"""Answers (label values, value) pairs when scraped."""


class _ScrapedGauge:
    """A gauge read when scraped: the sum, per label values, of what its readers answer
    (a process may hold several servers, as tests do)."""

    def __init__(self, name: str, labels: tuple[str, ...]) -> None:
        self.name, self.labels = name, labels
        self.readers: list[Reader] = []

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(self.name, GAUGES[self.name], labels=list(self.labels))
        totals: dict[tuple[str, ...], float] = {}
        for read in list(self.readers):
            for values, value in read():
                totals[values] = totals.get(values, 0.0) + value
        for values, value in sorted(totals.items()):
            family.add_metric(list(values), value)
        yield family


_gauges: dict[str, _ScrapedGauge] = {}


def read_when_scraped(name: str, labels: tuple[str, ...], read: Reader) -> Callable[[], None]:
    """Add `read` to the gauge `name` (one of `GAUGES`); the function that takes it away."""
    with _lock:
        gauge = _gauges.get(name)
        if gauge is None:
            from prometheus_client import REGISTRY

            gauge = _gauges[name] = _ScrapedGauge(name, labels)
            REGISTRY.register(gauge)  # a collector by its `collect`
        gauge.readers.append(read)

    def remove() -> None:
        with _lock:
            if read in gauge.readers:
                gauge.readers.remove(read)

    return remove


def prepare_multiprocess() -> str:
    """Make this process and its future children share samples through files in a fresh
    directory (unless the operator named one); call before the client is imported."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        directory = tempfile.mkdtemp(prefix="wfe-metrics-")
        os.environ[MULTIPROCESS_DIR] = directory
    return directory


def child_exited(pid: int) -> None:
    """A forked child ended: its live gauges no longer count."""
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve(address: str) -> int:
    """Serve `/metrics` on `address` (`host:port`, port 0 picks one) from a daemon thread;
    the port bound. In a multiprocess parent, the children's samples are added up here."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    host, _, port = address.rpartition(":")
    registry: CollectorRegistry = REGISTRY
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        for gauge in _gauges.values():
            registry.register(gauge)
    server, _ = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry)
    return int(server.server_port)


def remove_multiprocess_dir() -> None:
    """Delete the directory `prepare_multiprocess` made, as the parent exits."""
    directory = os.environ.get(MULTIPROCESS_DIR, "")
    if directory.startswith(tempfile.gettempdir()) and "wfe-metrics-" in directory:
        shutil.rmtree(directory, ignore_errors=True)
