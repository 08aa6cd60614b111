"""Seed 004's JavaScript runs against the gateway as a frontend would paste it, under Node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NewTenant, token
from tests.gateway.calls import hello, ok
from tests.gateway.conftest import Gateway

SCRIPTS = Path(__file__).resolve().parent / "js"


async def node(script: str, *arguments: str) -> tuple[int, Any, str]:
    """Run a script of `js/` (without blocking the loop that serves the gateway)."""
    executable = shutil.which("node")
    if executable is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true requires node to run seed 004's JavaScript")
        pytest.skip("node is not installed")
    process = await asyncio.create_subprocess_exec(
        executable,
        str(SCRIPTS / script),
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, json.loads(out.decode().strip().splitlines()[-1]), err.decode()


async def test_the_seeds_create_workflow_creates_the_workflow(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    code, workflow, stderr = await node(
        "create_workflow.mjs", gateway.url, token([tenant]), tenant, json.dumps(hello())
    )
    assert code == 0, stderr
    assert (workflow["name"], workflow["status"], workflow["version"]) == (
        "Hello",
        "WORKFLOW_STATUS_DRAFT",
        "1",
    )
    stored = ok(await gateway.call("GET", f"/api/workflows/{workflow['id']}", tenant))
    assert stored["steps"] == workflow["steps"] and stored["created_by"] == "user-1"


async def test_the_seeds_create_workflow_throws_the_error_bodys_message(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    document = hello()
    document["steps"][1]["next"] = "nowhere"
    code, thrown, stderr = await node(
        "create_workflow.mjs", gateway.url, token([tenant]), tenant, json.dumps(document)
    )
    assert code == 1 and "Error creating workflow" in stderr
    assert thrown["thrown"].startswith("the workflow definition has 2 error(s)"), thrown
    assert "'nowhere' is not a step of this workflow" in thrown["thrown"]


async def test_the_seeds_test_execute_workflow_answers_the_test_runs_trace(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    created = ok(await gateway.call("POST", "/api/workflows", tenant, json=hello()))  # a draft
    code, answer, stderr = await node(
        "test_execute.mjs",
        gateway.url,
        created["id"],
        json.dumps({"name": "Ana"}),
        token([tenant]),
        tenant,
    )
    assert code == 0, stderr
    execution = answer["execution"]
    assert (execution["status"], execution["test"]) == ("EXECUTION_STATUS_COMPLETED", True)
    assert [step["step_id"] for step in answer["trace"]] == ["input", "greet", "done"]
    assert answer["detail"] == "LOG_DETAIL_STANDARD"
    greet = answer["trace"][1]
    assert greet["input"] == {"values": {"to": "Ana", "greeting": "Hello"}}, greet


async def test_the_seeds_test_execute_workflow_throws_for_an_unknown_workflow(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    code, thrown, stderr = await node(
        "test_execute.mjs", gateway.url, "no-such-workflow", "{}", token([tenant]), tenant
    )
    assert code == 1 and "Error executing workflow" in stderr
    assert "no-such-workflow" in thrown["thrown"]
