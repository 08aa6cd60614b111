"""Metrics as an operator scrapes them: the counts and timings of a known workload.

In-process (the embedded engine on SQLite; the server alone on PostgreSQL, its engine in
worker processes) through this process's `/metrics` endpoint; then every role as a process
of its own on PostgreSQL, the worker's forked task processes added up by its endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families

from foundation import metrics
from foundation.log_context import working_on
from service.interceptors.request_id import RequestIdLogFilter
from service.logs import JsonFormatter
from tests.conftest import auth, require
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import broker_unavailable_reason, broker_url, wait_for_workers
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    http,
    start,
    step,
    three_steps,
    wait_until,
    workflow,
)
from tests.fault_harness import create_tenant, free_port, log_tails, serve_process
from wfe.v1 import event_pb2, event_pb2_grpc, execution_pb2
from workers.app import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample the endpoint on `port` serves, parsed as Prometheus parses it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (n, found), value in samples.items() if n == name and wanted <= found)


@pytest.fixture(scope="module")
def endpoint() -> int:
    return metrics.serve("127.0.0.1:0")


async def test_a_scrape_after_a_known_workload_shows_its_counts_and_timings(
    channel: aio.Channel, new_tenant: Callable[..., object], endpoint: int, request: object
) -> None:
    tenant = await new_tenant("professional")  # type: ignore[misc]
    embedded = "sqlite" in request.node.callspec.id  # type: ignore[attr-defined]
    workflow_id = await active_workflow(channel, tenant, three_steps())
    before = scrape(endpoint)

    started = [await start(channel, tenant, workflow_id, {"name": f"n{i}"}) for i in range(4)]
    for execution in started:
        await wait_until(channel, tenant, execution.id)
    with pytest.raises(aio.AioRpcError):
        await executions(channel).GetExecution(
            execution_pb2.GetExecutionRequest(execution_id="00000000-0000-0000-0000-000000000000"),
            metadata=auth(tenant),
        )
    watch = event_pb2_grpc.EventServiceStub(channel).Subscribe(
        event_pb2.SubscribeRequest(topics=[f"execution:{started[0].id}"]), metadata=auth(tenant)
    )
    after = scrape(endpoint)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    start_call = "ExecutionService/StartExecution"
    assert grew("wfe_rpc_requests_total", method=start_call, code="OK") == 4
    assert grew("wfe_rpc_duration_seconds_count", method=start_call) == 4

    async def refusal_counted() -> bool:  # counted as the answer leaves: maybe after it arrived
        now = scrape(endpoint)
        get_call = {"method": "ExecutionService/GetExecution", "code": "NOT_FOUND"}
        return total(now, "wfe_rpc_requests_total", **get_call) > total(
            before, "wfe_rpc_requests_total", **get_call
        )

    await eventually(refusal_counted, "the refusal counted by its code")
    assert grew("wfe_executions_started_total", tier="professional") == 4
    if embedded:  # the engine runs here: its samples are this process's
        assert grew("wfe_executions_finished_total", tier="professional", status="completed") == 4
        for step_type in ("input", "tool", "output"):
            assert (
                grew(
                    "wfe_step_duration_seconds_count",
                    step_type=step_type,
                    tier="professional",
                    outcome="completed",
                )
                == 4
            ), step_type
        assert grew("wfe_dispatch_lag_seconds_count", tier="professional") >= 4
    assert not any(
        labels
        for (name, labels) in after
        if name.startswith("wfe_") and (("tenant", tenant) in labels)
    ), "no series names a tenant unless the operator opted in"

    async def streaming() -> bool:
        return total(scrape(endpoint), "wfe_stream_subscribers") >= 1

    await watch.initial_metadata()
    await eventually(streaming, "the open stream is counted")
    watch.cancel()


async def test_json_log_lines_name_the_work_and_never_a_credential() -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json_lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with working_on("acme", "exec-1", "call@each:2"):
            logger.warning("calling with Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln")
        logger.error("broker at amqp://wfe:hunter2@rabbit:5672// refused; token=whk1_abcdef")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in lines)
    assert first["tenant"] == "acme"
    assert first["execution_id"] == "exec-1"
    assert first["step_id"] == "call@each:2"
    assert first["level"] == "WARNING" and first["logger"] == "tests.json_lines"
    assert "eyJ" not in first["message"] and "Bearer ***" in first["message"]
    assert "hunter2" not in second["message"] and "whk1_" not in second["message"]
    assert "execution_id" not in second


# --- every role as a process --------------------------------------------------------------


@pytest.fixture
async def processes_stack(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path
) -> AsyncIterator[tuple[aio.Channel, dict[str, int], Path]]:
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    ports = {role: free_port() for role in ("serve", "worker", "beat")}
    async with serve_process(
        postgres,
        effects,
        tmp_path,
        broker=url,
        extra_env={"WFE_METRICS_ADDRESS": f"127.0.0.1:{ports['serve']}"},
    ) as (_, channel, processes):
        base = dict(processes.env)
        processes.env = {**base, "WFE_METRICS_ADDRESS": f"127.0.0.1:{ports['worker']}"}
        queue = base["WFE_QUEUE_NAME"]
        processes.worker(f"--name={queue}-m@%h")
        processes.env = {**base, "WFE_METRICS_ADDRESS": f"127.0.0.1:{ports['beat']}"}
        processes.beat()
        app = create_app(metrics_settings(base))
        await asyncio.to_thread(wait_for_workers, app, [f"{queue}-m"])
        yield channel, ports, tmp_path


def metrics_settings(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from tests.conftest import server_settings

    return server_settings(broker_url=env["WFE_BROKER_URL"], queue_name=env["WFE_QUEUE_NAME"])


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_every_role_serves_what_it_measures_on_its_own_endpoint(
    postgres: ThrowawayDatabase,
    effects: Effects,
    processes_stack: tuple[aio.Channel, dict[str, int], Path],
) -> None:
    channel, ports, logs = processes_stack
    tenant = await create_tenant(postgres, "professional")
    calling = workflow(
        step("input", "input", "call", name="Input"),
        http("call", "done", effects.url(), method="POST", name="Call"),
        step("done", "output", name="Done"),
    )
    workflow_id = await active_workflow(channel, tenant, calling)
    started = [await start(channel, tenant, workflow_id, {"n": n}) for n in range(3)]
    for execution in started:
        await wait_until(channel, tenant, execution.id, patience=60)

    server = await asyncio.to_thread(scrape, ports["serve"])
    assert total(server, "wfe_executions_started_total", tier="professional") == 3
    start_call = "ExecutionService/StartExecution"
    assert total(server, "wfe_rpc_requests_total", method=start_call, code="OK") == 3

    async def worker_counted() -> bool:
        worker = await asyncio.to_thread(scrape, ports["worker"])
        return (
            total(worker, "wfe_executions_finished_total", status="completed") == 3
            and total(
                worker,
                "wfe_step_duration_seconds_count",
                step_type="tool",
                outcome="completed",
            )
            == 3
        )

    await eventually(worker_counted, f"the worker's samples\n{log_tails(logs)}", patience=20)

    async def beat_reads_the_backlog() -> bool:
        beat = await asyncio.to_thread(scrape, ports["beat"])
        depths = [labels for (name, labels) in beat if name == "wfe_queue_depth"]
        queued = [labels for (name, labels) in beat if name == "wfe_admission_queue_length"]
        return bool(depths) and ("tier", "professional") in {pair for q in queued for pair in q}

    await eventually(beat_reads_the_backlog, f"the beat's gauges\n{log_tails(logs)}", patience=20)
