"""Traces as an operator's collector receives them: one trace per execution start, from the
StartExecution call on the server, across the broker, to every step attempt on a worker
process and the outbound HTTP call it made.

The collector is this test's: an OTLP/HTTP endpoint keeping what it receives in memory,
which `wfe serve` and `wfe worker` export to through the standard `OTEL_*` variables.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.conftest import auth, require, server_settings
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import broker_unavailable_reason, broker_url, wait_for_workers
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    http,
    step,
    struct,
    transform,
    wait_until,
    workflow,
)
from tests.fault_harness import create_tenant, log_tails, serve_process
from wfe.v1 import execution_pb2
from workers.app import create_app

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP trace endpoint that keeps every span it receives."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                collector.keep(request)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def keep(self, request: Any) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {
                        a.key: a.value.string_value or a.value.int_value for a in span.attributes
                    }
                    received.append(
                        ReceivedSpan(
                            resource.get("service.name", ""),
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            attributes,
                        )
                    )
        with self._lock:
            self.spans += received

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


async def test_one_trace_links_the_start_call_to_every_step_attempt_across_the_worker(
    postgres: ThrowawayDatabase, effects: Effects, collector: Collector, tmp_path: Path
) -> None:
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    tracing_env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    async with serve_process(postgres, effects, tmp_path, broker=url, extra_env=tracing_env) as (
        _,
        channel,
        processes,
    ):
        queue = processes.env["WFE_QUEUE_NAME"]
        processes.worker(f"--name={queue}-t@%h")
        app = create_app(server_settings(broker_url=url, queue_name=queue))
        await asyncio.to_thread(wait_for_workers, app, [f"{queue}-t"])
        tenant = await create_tenant(postgres, "professional")
        document = workflow(
            step("input", "input", "call", name="Input"),
            http("call", "shape", effects.url(), method="POST", name="Call"),
            transform("shape", "done", {"status": "$.call.status_code"}, name="Shape"),
            step("done", "output", name="Done"),
        )
        workflow_id = await active_workflow(channel, tenant, document)

        trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        request = execution_pb2.StartExecutionRequest(workflow_id=workflow_id, input=struct({}))
        metadata = (*auth(tenant), ("traceparent", f"00-{trace_id}-{caller_span}-01"))
        started = await executions(channel).StartExecution(request, metadata=metadata)
        execution = await wait_until(channel, tenant, started.execution.id, patience=60)
        assert execution.status == execution_pb2.EXECUTION_STATUS_COMPLETED

        step_ids = {"input", "call", "shape", "done"}

        def complete() -> bool:
            spans = collector.of_trace(trace_id)
            ran = {s.attributes.get("wfe.step_id") for s in spans if s.name.startswith("step ")}
            return step_ids <= ran and any(s.name == "HTTP POST" for s in spans)

        await eventually(complete, f"every span exported\n{log_tails(tmp_path)}", patience=20)

    spans = collector.of_trace(trace_id)
    starts = [s for s in spans if s.name == "ExecutionService/StartExecution"]
    assert len(starts) == 1, [s.name for s in spans]
    (start_span,) = starts
    assert start_span.service == "wfe-server"
    assert start_span.parent_id == caller_span, "the server span joins the caller's trace"
    attempts = [s for s in spans if s.name.startswith("step ")]
    assert {s.attributes["wfe.step_id"] for s in attempts} == step_ids
    for attempt in attempts:
        assert attempt.service == "wfe-worker", "attempts run on the worker process"
        assert attempt.parent_id == start_span.span_id, "each attempt hangs off the start"
        assert attempt.attributes["wfe.execution_id"] == execution.id
    (call_span,) = [s for s in attempts if s.attributes["wfe.step_id"] == "call"]
    (outbound,) = [s for s in spans if s.name == "HTTP POST"]
    assert outbound.parent_id == call_span.span_id, "the HTTP call is the call step's child"
    assert call_span.name == "step tool"
