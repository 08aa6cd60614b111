"""A tool package installed through the `wfe.tools` entry point is a tool like the built-ins.

The package (tests/fixtures/tool_package, `text_stats`, Professional and up) is installed
with pip into a folder of its own and put on the service's PYTHONPATH; the servers and
workers are real processes, so this test process never loads it. SQLite runs as `wfe
dev` runs it (embedded engine); PostgreSQL as production does (`wfe serve` and a `wfe
worker` process on the broker).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from grpc import aio

from tenancy.dev_tokens import dev_secret, mint_token
from tests.conftest import AUDIENCE, ISSUER, SECRET, require, server_settings
from tests.databases import ThrowawayDatabase
from tests.engine_stack import (
    Processes,
    broker_unavailable_reason,
    broker_url,
    purge_queue,
    unique_queue,
    wait_for_workers,
    worker_environment,
)
from tests.execution_helpers import step, struct, workflow
from tests.test_cli import free_port, wait_for_health
from tests.workflow_helpers import message
from wfe.v1 import (
    execution_pb2,
    execution_pb2_grpc,
    tenant_pb2,
    workflow_pb2,
    workflow_pb2_grpc,
)
from workers.app import create_app

PACKAGE = Path(__file__).resolve().parent.parent / "fixtures" / "tool_package"
PIP_INSTALL = [
    sys.executable,
    "-m",
    "pip",
    "install",
    "--quiet",
    "--no-deps",
    "--no-build-isolation",
]


@dataclass(frozen=True)
class Stack:
    """A running service whose processes have the tool package installed."""

    address: str
    secret: str
    issuer: str
    free: str
    professional: str
    enterprise: str
    """An Enterprise tenant with the package's adapter enabled."""

    def auth(self, tenant: str) -> tuple[tuple[str, str], ...]:
        bearer = mint_token(self.secret, tenants=[tenant], issuer=self.issuer, audience=AUDIENCE)
        return (("authorization", f"Bearer {bearer}"), ("x-tenant-id", tenant))


@pytest.fixture(scope="module")
def tool_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed by pip into a folder of its own (a copy builds, not the tree)."""
    source = tmp_path_factory.mktemp("source") / "tool_package"
    shutil.copytree(PACKAGE, source)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(source)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    assert list(target.glob("wfe_text_tools-1.0.0.dist-info/entry_points.txt"))
    return target


def _environment(tool_package: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tool_package), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def stack(
    request: pytest.FixtureRequest,
    tool_package: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    if request.param == "sqlite":
        yield from _embedded_stack(tool_package, tmp_path_factory.mktemp("dev"))
    else:
        postgres: ThrowawayDatabase = request.getfixturevalue("postgres")
        yield from _broker_stack(tool_package, postgres, tmp_path_factory.mktemp("serve"))


def _embedded_stack(tool_package: Path, data_dir: Path) -> Iterator[Stack]:
    """`wfe dev` with the package installed: its demo tenants, its development secret."""
    env = _environment(tool_package)
    env["WFE_DATA_DIR"] = str(data_dir)
    env["WFE_GATEWAY_LISTEN_ADDRESS"] = "127.0.0.1:0"  # dev's gateway: any free port
    address = f"127.0.0.1:{free_port()}"
    log = data_dir / "dev.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dev", "--address", address],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_health(address, process, lambda: log.read_text(errors="replace"), 60)
        yield Stack(
            address, dev_secret(data_dir), "wfe-dev", "demo-free", "demo-pro", "demo-enterprise"
        )
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _broker_stack(
    tool_package: Path, postgres: ThrowawayDatabase, data_dir: Path
) -> Iterator[Stack]:
    """`wfe serve` and a `wfe worker` process on the broker, both with the package."""
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    queue = unique_queue()
    env = worker_environment(postgres.service_url, url, queue, data_dir) | {
        "PYTHONPATH": _environment(tool_package)["PYTHONPATH"],
        "WFE_JWT_SECRET": SECRET,
        "WFE_JWT_ISSUER": ISSUER,
        "WFE_JWT_AUDIENCE": AUDIENCE,
    }
    address = f"127.0.0.1:{free_port()}"
    free, professional = f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"
    enterprise = f"t-{uuid.uuid4().hex[:12]}"
    _register(
        postgres.admin_url,
        {free: "free", professional: "professional", enterprise: "enterprise"},
        tool_package,
    )
    processes = Processes(env | {"WFE_LISTEN_ADDRESS": address}, data_dir)
    try:
        server = processes.start("serve")
        processes.worker(f"--name={queue}-0@%h")
        wait_for_health(address, server, (data_dir / "serve-1.log").read_text, 60)
        wait_for_workers(
            create_app(server_settings(broker_url=url, queue_name=queue)), [f"{queue}-0"]
        )
        yield Stack(address, SECRET, ISSUER, free, professional, enterprise)
    finally:
        processes.stop_all()
        purge_queue(url, queue)


def _register(admin_url: str, tiers: dict[str, str], tool_package: Path) -> None:
    """Register the tenants as `wfe tenant create` and `set-adapters` do, in a process that
    has the package installed (enabling an adapter checks that it is)."""
    env = _environment(tool_package) | {"WFE_ADMIN_DATABASE_URL": admin_url}
    for tenant_id, tier in tiers.items():
        wfe = [sys.executable, "-m", "cli.main", "tenant"]
        subprocess.run([*wfe, "create", tenant_id, "--tier", tier], env=env, check=True)
        if tier == "enterprise":
            subprocess.run([*wfe, "set-adapters", tenant_id, "text.shout"], env=env, check=True)


@pytest.fixture
async def channel(stack: Stack) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(stack.address) as opened:
        yield opened


def counting_workflow() -> dict[str, object]:
    """input -> stats (text_stats on the input's text) -> done (the counts)."""
    stats = {"tool": "text_stats", "arguments": {"text": "$.input.text"}}
    values = {"words": "$.stats.words", "characters": "$.stats.characters"}
    return workflow(
        step("input", "input", "stats"),
        step("stats", "tool", "done", config=stats),
        step("done", "output", config={"values": values}),
    )


async def test_a_plugged_in_tool_is_listed_with_its_schemas_mode_and_tier(
    stack: Stack, channel: aio.Channel
) -> None:
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    request = workflow_pb2.ListStepTypesRequest()

    listed = await workflows.ListStepTypes(request, metadata=stack.auth(stack.professional))
    tools = {tool.name: tool for tool in listed.tools}
    tool_step = next(t for t in listed.step_types if t.type == "tool")
    on_free = await workflows.ListStepTypes(request, metadata=stack.auth(stack.free))

    stats = tools["text_stats"]
    assert sorted(tools) == ["http_request", "log", "text.shout", "text_stats", "transform"]
    assert json_format.MessageToDict(stats.arguments_schema)["required"] == ["text"]
    assert sorted(json_format.MessageToDict(stats.output_schema)["properties"]) == [
        "characters",
        "words",
    ]
    assert stats.mode == workflow_pb2.TOOL_MODE_INLINE
    assert stats.minimum_tier == tenant_pb2.TIER_PROFESSIONAL
    assert stats.available
    assert (
        "text_stats"
        in json_format.MessageToDict(tool_step.config_schema)["properties"]["tool"]["enum"]
    )
    assert not {tool.name: tool for tool in on_free.tools}["text_stats"].available


async def test_a_plugged_in_tool_validates_and_runs_in_an_execution(
    stack: Stack, channel: aio.Channel
) -> None:
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    executions = execution_pb2_grpc.ExecutionServiceStub(channel)
    metadata = stack.auth(stack.professional)
    document = message(counting_workflow())

    report = await workflows.ValidateWorkflow(
        workflow_pb2.ValidateWorkflowRequest(workflow=document), metadata=metadata
    )
    created = await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(workflow=document), metadata=metadata
    )
    await workflows.ActivateWorkflow(
        workflow_pb2.ActivateWorkflowRequest(id=created.workflow.id), metadata=metadata
    )
    started = await executions.StartExecution(
        execution_pb2.StartExecutionRequest(
            workflow_id=created.workflow.id, input=struct({"text": "three small words"})
        ),
        metadata=metadata,
    )
    done = await _finished(executions, started.execution.id, metadata)

    assert (report.valid, list(report.warnings)) == (True, [])
    assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED, done.error_detail
    assert json_format.MessageToDict(done.result) == {"words": 3, "characters": 17}


async def test_a_plugged_in_tool_is_refused_below_its_tier(
    stack: Stack, channel: aio.Channel
) -> None:
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    metadata = stack.auth(stack.free)
    document = message(counting_workflow())

    report = await workflows.ValidateWorkflow(
        workflow_pb2.ValidateWorkflowRequest(workflow=document), metadata=metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await workflows.CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(workflow=document), metadata=metadata
        )

    assert [(e.code, e.step_id, e.field) for e in report.errors] == [
        ("tier_restriction", "stats", "steps[1].config.tool")
    ]
    assert "professional" in report.errors[0].message
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tier_restriction" in (refused.value.details() or "")


async def test_reading_a_field_the_plugged_in_tool_never_produces_is_warned(
    stack: Stack, channel: aio.Channel
) -> None:
    document = counting_workflow()
    document["steps"][2]["config"]["values"]["sentences"] = "$.stats.sentences"  # type: ignore[index]

    report = await workflow_pb2_grpc.WorkflowServiceStub(channel).ValidateWorkflow(
        workflow_pb2.ValidateWorkflowRequest(workflow=message(document)),
        metadata=stack.auth(stack.professional),
    )

    assert report.valid
    assert [(w.code, w.field) for w in report.warnings] == [
        ("unknown_output_field", "steps[2].config.values.sentences")
    ]
    assert "characters, words" in report.warnings[0].message


async def _finished(
    executions: execution_pb2_grpc.ExecutionServiceStub,
    execution_id: str,
    metadata: tuple[tuple[str, str], ...],
) -> execution_pb2.Execution:
    terminal = {
        execution_pb2.EXECUTION_STATUS_COMPLETED,
        execution_pb2.EXECUTION_STATUS_FAILED,
        execution_pb2.EXECUTION_STATUS_CANCELLED,
    }
    deadline = time.monotonic() + 30
    while True:
        found = await executions.GetExecution(
            execution_pb2.GetExecutionRequest(execution_id=execution_id), metadata=metadata
        )
        if found.execution.status in terminal:
            return found.execution
        assert time.monotonic() < deadline, f"still {found.execution.status} after 30 s"


def shouting_workflow() -> dict[str, object]:
    """input -> shout (the text.shout adapter) -> done."""
    shout = {"adapter": "text.shout", "arguments": {"text": "$.input.text"}}
    return workflow(
        step("input", "input", "shout"),
        step("shout", "custom", "done", config=shout),
        step("done", "output", config={"values": {"shouted": "$.shout.shouted"}}),
    )


async def test_a_plugged_in_adapter_runs_for_an_enterprise_tenant_that_enabled_it(
    stack: Stack, channel: aio.Channel
) -> None:
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    executions = execution_pb2_grpc.ExecutionServiceStub(channel)
    metadata = stack.auth(stack.enterprise)
    created = await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(workflow=message(shouting_workflow())),
        metadata=metadata,
    )
    await workflows.ActivateWorkflow(
        workflow_pb2.ActivateWorkflowRequest(id=created.workflow.id), metadata=metadata
    )
    started = await executions.StartExecution(
        execution_pb2.StartExecutionRequest(
            workflow_id=created.workflow.id, input=struct({"text": "quiet please"})
        ),
        metadata=metadata,
    )
    done = await _finished(executions, started.execution.id, metadata)

    assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED, done.error_detail
    assert json_format.MessageToDict(done.result) == {"shouted": "QUIET PLEASE"}
    listed = await workflows.ListStepTypes(workflow_pb2.ListStepTypesRequest(), metadata=metadata)
    assert {t.name: t.available for t in listed.tools}["text.shout"]


async def test_a_plugged_in_adapter_is_refused_on_professional_with_tier_restriction(
    stack: Stack, channel: aio.Channel
) -> None:
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    report = await workflows.ValidateWorkflow(
        workflow_pb2.ValidateWorkflowRequest(workflow=message(shouting_workflow())),
        metadata=stack.auth(stack.professional),
    )
    assert {(e.code, e.step_id) for e in report.errors} == {("tier_restriction", "shout")}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await workflows.CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(workflow=message(shouting_workflow())),
            metadata=stack.auth(stack.professional),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tier_restriction" in (refused.value.details() or "")
