"""`wfe execution ...` against a live server: start, follow, cancel, retry and rerun."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import LiveDev, fields
from tests.cli.test_workflows import GREETER, document
from tests.test_cli import WFE

CALL = """\
name: Call
steps:
  - {{id: input, type: input, next: call}}
  - id: call
    type: tool
    config: {{tool: http_request, arguments: {{url: "{url}"}}}}
    retry: {{max_attempts: {attempts}, initial_interval: 1h}}
    on_error: {policy}
    next: done
  - {{id: done, type: output, config: {{values: {{}}}}}}
"""


def calling(live: LiveDev, *, retried: bool) -> str:
    """A workflow whose call fails: retried in an hour, so it waits; or failing at once."""
    attempts, policy = (3, "retry") if retried else (1, "fail")
    return CALL.format(url=live.refusing_url, attempts=attempts, policy=policy)


def active(live: LiveDev, path: str) -> str:
    created = live.wfe("workflow", "create", "-f", path, "--json")
    assert created.returncode == 0, created.stderr
    workflow_id = str(json.loads(created.stdout)["id"])
    assert live.wfe("workflow", "activate", workflow_id).returncode == 0
    return workflow_id


def execution(live: LiveDev, *args: str) -> dict[str, Any]:
    result = live.wfe("execution", *args, "--json")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def wait_for(live: LiveDev, execution_id: str, *statuses: str) -> dict[str, Any]:
    """The execution once its status is one of `statuses` (names without the prefix)."""
    wanted = {f"EXECUTION_STATUS_{status.upper()}" for status in statuses}
    deadline = time.monotonic() + 30
    while True:
        current = execution(live, "get", execution_id)
        if current["status"] in wanted or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


@pytest.fixture(scope="module")
def greeter(live_dev: LiveDev, tmp_path_factory: pytest.TempPathFactory) -> str:
    return active(live_dev, document(tmp_path_factory.mktemp("greeter"), GREETER))


def test_execution_start_get_list_and_rerun(live_dev: LiveDev, greeter: str) -> None:
    started = live_dev.wfe("execution", "start", greeter, "--input", '{"name": "ada"}')
    assert started.returncode == 0, started.stderr
    shown = fields(started.stdout)
    assert shown["workflow"] == f"{greeter} (version 1)"
    assert shown["input"] == '{"name":"ada"}'
    execution_id = shown["id"]

    done = wait_for(live_dev, execution_id, "completed", "failed")
    assert (done["status"], done["result"]) == ("EXECUTION_STATUS_COMPLETED", {"greeting": "ada"})
    table = live_dev.wfe("execution", "get", execution_id)
    assert fields(table.stdout)["result"] == '{"greeting":"ada"}'
    assert ["shape", "completed", "1"] in [row.split()[:3] for row in table.stdout.splitlines()]

    listed = execution(live_dev, "list", "--workflow", greeter, "--status", "completed")
    assert [e["id"] for e in listed["executions"]] == [execution_id]
    none = execution(live_dev, "list", "--workflow", greeter, "--status", "cancelled")
    assert none.get("executions", []) == []

    rerun = execution(
        live_dev, "rerun", execution_id, "--from-step", "shape", "--input-patch", '{"name": "bo"}'
    )
    assert rerun["rerun_of"] == execution_id
    again = wait_for(live_dev, rerun["id"], "completed", "failed")
    assert again["result"] == {"greeting": "bo"}


def test_execution_cancel_stops_an_execution_waiting_to_retry(
    live_dev: LiveDev, tmp_path: Path
) -> None:
    workflow_id = active(live_dev, document(tmp_path, calling(live_dev, retried=True)))
    started = execution(live_dev, "start", workflow_id)
    wait_for(live_dev, started["id"], "in_progress")
    cancelled = live_dev.wfe("execution", "cancel", started["id"], "--reason", "enough")
    assert cancelled.returncode == 0, cancelled.stderr
    assert fields(cancelled.stdout)["status"] == "cancelled"

    again = live_dev.wfe("execution", "cancel", started["id"])
    assert again.returncode == 1
    assert again.stderr.startswith("FAILED_PRECONDITION WORKFLOW_EXECUTION_ERROR: ")


def test_execution_watch_follows_a_running_execution_live_until_it_ends(
    live_dev: LiveDev, tmp_path: Path
) -> None:
    workflow_id = active(live_dev, document(tmp_path, calling(live_dev, retried=True)))
    started = execution(live_dev, "start", workflow_id)
    wait_for(live_dev, started["id"], "in_progress")
    watching = subprocess.Popen(
        [*WFE, "execution", "watch", started["id"]],
        env=live_dev.as_tenant("demo-pro"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watching.stdout is not None
        first = watching.stdout.readline()  # the snapshot, before anything else happens
        assert first.startswith(f"{started['id']} [") and "in_progress" in first
        cancelled = live_dev.wfe("execution", "cancel", started["id"], "--reason", "enough")
        assert cancelled.returncode == 0, cancelled.stderr
        rest, errors = watching.communicate(timeout=30)
    finally:
        if watching.poll() is None:
            watching.kill()
    assert watching.returncode == 1, errors  # it ended, but not completed
    assert rest.splitlines()[-1].startswith("cancelled cancelled in ")


def test_execution_watch_of_a_finished_execution_shows_it_and_its_result(
    live_dev: LiveDev, greeter: str
) -> None:
    started = execution(live_dev, "start", greeter, "--input", '{"name": "ada"}')
    wait_for(live_dev, started["id"], "completed")
    shown = live_dev.wfe("execution", "watch", started["id"])
    assert shown.returncode == 0, shown.stderr
    first, result = shown.stdout.splitlines()
    assert "[########################] 100% completed" in first
    assert result == 'result: {"greeting":"ada"}'
    lines = live_dev.wfe("execution", "watch", started["id"], "--json").stdout.splitlines()
    assert json.loads(lines[0])["snapshot"]["status"] == "EXECUTION_STATUS_COMPLETED"


def test_execution_watch_of_an_unknown_execution_is_refused(live_dev: LiveDev) -> None:
    refused = live_dev.wfe("execution", "watch", "no-such-execution")
    assert refused.returncode == 1
    assert refused.stderr.startswith("NOT_FOUND EXECUTION_NOT_FOUND: ")


def test_execution_retry_resumes_a_failed_execution(live_dev: LiveDev, tmp_path: Path) -> None:
    workflow_id = active(live_dev, document(tmp_path, calling(live_dev, retried=False)))
    started = execution(live_dev, "start", workflow_id)
    failed = wait_for(live_dev, started["id"], "failed", "completed")
    assert failed["status"] == "EXECUTION_STATUS_FAILED"
    retried = execution(live_dev, "retry", started["id"])
    assert retried["id"] == started["id"]
    assert retried["status"] != "EXECUTION_STATUS_FAILED"


def test_execution_input_refused_by_the_schema_prints_the_violation(
    live_dev: LiveDev, greeter: str
) -> None:
    refused = live_dev.wfe("execution", "start", greeter, "--input", '{"nom": "x"}')
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("INVALID_ARGUMENT INVALID_INPUT: ")
    assert lines[1] == "  input: 'name' is a required property"


def test_execution_input_that_is_no_json_object_is_a_usage_error(
    live_dev: LiveDev, greeter: str, tmp_path: Path
) -> None:
    for given in ("[1]", "{not json", f"@{tmp_path / 'absent.json'}"):
        result = live_dev.wfe("execution", "start", greeter, "--input", given)
        assert result.returncode == 2, (given, result.stderr)
        assert "--input" in result.stderr
    (tmp_path / "input.json").write_text('{"name": "file"}')
    from_file = execution(live_dev, "start", greeter, "--input", f"@{tmp_path / 'input.json'}")
    assert from_file["input"] == {"name": "file"}
