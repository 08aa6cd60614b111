"""`wfe workflow ...` against a live server: a workflow's life, for people and for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import LiveDev, fields

GREETER = """\
name: Greeter
input_schema: {type: object, required: [name], properties: {name: {type: string}}}
steps:
  - {id: input, type: input, name: Input, next: shape}
  - id: shape
    type: tool
    name: Shape
    config: {tool: transform, arguments: {values: {greeting: $.input.name}}}
    next: done
  - {id: done, type: output, name: Done, config: {values: {greeting: $.shape.greeting}}}
"""


NOTIFY = """\
name: Notify on signup
steps:
  - {id: input, type: input, next: welcome}
  - id: welcome
    type: tool
    name: Send welcome mail
    config:
      tool: http_request
      arguments: {method: POST, url: "https://mail.example.com/send", body: {to: $.input.email}}
    retry: {max_attempts: 3, initial_interval: 500ms, max_interval: 1m}
    on_error: continue
    timeout: 10s
    next: done
  - {id: done, type: output, config: {values: {email: $.input.email}}}
"""


def document(tmp_path: Path, text: str = GREETER, name: str = "flow.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def created(live: LiveDev, path: str, tenant: str = "demo-pro") -> dict[str, Any]:
    result = live.wfe("workflow", "create", "-f", path, "--json", tenant=tenant)
    assert result.returncode == 0, result.stderr
    workflow: dict[str, Any] = json.loads(result.stdout)
    return workflow


def test_workflow_create_get_list_update_activate_archive_and_delete(
    live_dev: LiveDev, tmp_path: Path
) -> None:
    workflow = created(live_dev, document(tmp_path))
    assert (workflow["name"], workflow["version"], workflow["status"]) == (
        "Greeter",
        "1",
        "WORKFLOW_STATUS_DRAFT",
    )
    workflow_id = str(workflow["id"])

    shown = live_dev.wfe("workflow", "get", workflow_id)
    assert shown.returncode == 0, shown.stderr
    assert fields(shown.stdout)["id"] == workflow_id
    steps = [line.split() for line in shown.stdout.split("\n\n")[1].splitlines()]
    assert steps == [
        ["STEP", "TYPE", "NAME", "NEXT"],
        ["input", "input", "Input", "shape"],
        ["shape", "tool", "Shape", "done"],
        ["done", "output", "Done"],
    ]

    listed = live_dev.wfe("workflow", "list", "--name-prefix", "Greeter", "--json")
    assert workflow_id in [w["id"] for w in json.loads(listed.stdout)["workflows"]]
    table = live_dev.wfe("workflow", "list", "--status", "draft").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "VERSION", "UPDATED"]
    assert any(row.startswith(workflow_id) and " draft " in row for row in table[1:])

    renamed = document(tmp_path, GREETER.replace("name: Greeter", "name: Greeter two"), "v2.yaml")
    updated = live_dev.wfe("workflow", "update", workflow_id, "-f", renamed, "--json")
    assert json.loads(updated.stdout)["version"] == "2", updated.stderr
    versions = json.loads(live_dev.wfe("workflow", "versions", workflow_id, "--json").stdout)
    assert [v["version"] for v in versions["versions"]] == ["2", "1"]
    first = live_dev.wfe("workflow", "get", workflow_id, "--version", "1", "--json")
    assert json.loads(first.stdout)["name"] == "Greeter"

    activated = live_dev.wfe("workflow", "activate", workflow_id)
    assert fields(activated.stdout)["status"] == "active", activated.stderr
    archived = live_dev.wfe("workflow", "archive", workflow_id, "--json")
    assert json.loads(archived.stdout)["status"] == "WORKFLOW_STATUS_ARCHIVED"

    drawn = live_dev.wfe("workflow", "diagram", workflow_id)
    assert drawn.returncode == 0 and drawn.stdout.startswith("flowchart"), drawn.stderr

    deleted = live_dev.wfe("workflow", "delete", workflow_id)
    assert deleted.stdout.strip() == f"deleted workflow {workflow_id}", deleted.stderr
    gone = live_dev.wfe("workflow", "get", workflow_id)
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"NOT_FOUND WORKFLOW_NOT_FOUND: no workflow '{workflow_id}'")


def test_workflow_diff_shows_changed_steps_and_fields(live_dev: LiveDev, tmp_path: Path) -> None:
    workflow_id = str(created(live_dev, document(tmp_path), tenant="demo-enterprise")["id"])
    changed = GREETER.replace("name: Greeter", "name: Greeter two").replace(
        "greeting: $.shape.greeting}", "greeting: $.shape.greeting, who: $.input.name}"
    )
    updated = live_dev.wfe(
        "workflow",
        "update",
        workflow_id,
        "-f",
        document(tmp_path, changed, "v2.yaml"),
        tenant="demo-enterprise",
    )
    assert updated.returncode == 0, updated.stderr

    diff = live_dev.wfe("workflow", "diff", workflow_id, "1", "2", tenant="demo-enterprise")
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines() == [
        "~ step done",
        '    config.values: {"greeting":"$.shape.greeting"} -> '
        '{"greeting":"$.shape.greeting","who":"$.input.name"}',
        '~ name: "Greeter" -> "Greeter two"',
    ]
    as_json = live_dev.wfe(
        "workflow", "diff", workflow_id, "1", "2", "--json", tenant="demo-enterprise"
    )
    assert json.loads(as_json.stdout)["changed_steps"][0]["step_id"] == "done"

    refused = live_dev.wfe("workflow", "diff", workflow_id, "1", "2", tenant="demo-pro")
    assert refused.returncode == 1  # diffs are not in the Professional plan
    assert refused.stderr.startswith("FAILED_PRECONDITION TIER_RESTRICTION: ")


def test_workflow_validate_lists_issues_and_exits_1_when_invalid(
    live_dev: LiveDev, tmp_path: Path
) -> None:
    valid = live_dev.wfe("workflow", "validate", "-f", document(tmp_path))
    assert (valid.returncode, valid.stdout.strip()) == (0, "valid: 0 errors, 0 warnings")

    broken = document(tmp_path, GREETER.replace("next: done", "next: nowhere"), "broken.yaml")
    invalid = live_dev.wfe("workflow", "validate", "-f", broken)
    assert invalid.returncode == 1
    header, row = invalid.stdout.splitlines()[:2]
    assert header.split() == ["LEVEL", "CODE", "STEP", "FIELD", "MESSAGE"]
    assert row.split()[:4] == ["error", "unknown_step_reference", "shape", "steps[1].next"]
    scripted = live_dev.wfe("workflow", "validate", "-f", broken, "--json")
    assert json.loads(scripted.stdout)["errors"][0]["code"] == "unknown_step_reference"


def test_workflow_create_refusal_prints_reason_violations_and_request_id(
    live_dev: LiveDev, tmp_path: Path
) -> None:
    broken = document(tmp_path, GREETER.replace("next: done", "next: nowhere"))
    refused = live_dev.wfe("workflow", "create", "-f", broken)
    assert refused.returncode == 1
    assert refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("INVALID_ARGUMENT INVALID_WORKFLOW_DEFINITION: ")
    assert lines[1].startswith("  steps[1].next: unknown_step_reference")
    assert lines[-1].startswith("  request id: ")


def test_workflow_document_that_cannot_be_read_is_a_usage_error(
    live_dev: LiveDev, tmp_path: Path
) -> None:
    unreadable = live_dev.wfe("workflow", "create", "-f", document(tmp_path, "name: [unclosed"))
    assert unreadable.returncode == 2
    assert "not valid JSON or YAML" in unreadable.stderr
    missing = live_dev.wfe("workflow", "create", "-f", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2


def test_workflow_create_reads_durations_and_policies_as_people_write_them(
    live_dev: LiveDev, tmp_path: Path
) -> None:
    workflow = created(live_dev, document(tmp_path, NOTIFY), tenant="demo-free")
    welcome = workflow["steps"][1]
    assert welcome["on_error"] == "ERROR_POLICY_CONTINUE"
    retry = welcome["retry"]
    assert (retry["initial_interval"], retry["max_interval"], welcome["timeout"]) == (
        "0.500s",
        "60s",
        "10s",
    )


def test_workflow_list_pages_with_the_token_it_prints(live_dev: LiveDev, tmp_path: Path) -> None:
    prefix = f"Paged {tmp_path.name}"
    for n in (1, 2):
        text = GREETER.replace("name: Greeter", f"name: {prefix} {n}")
        created(live_dev, document(tmp_path, text, f"{n}.yaml"), tenant="demo-enterprise")
    page = ["workflow", "list", "--name-prefix", prefix, "--page-size", "1"]
    first = live_dev.wfe(*page, tenant="demo-enterprise")
    assert len(first.stdout.splitlines()) == 2  # the header and one row
    hint = first.stderr.strip()
    assert hint.startswith("more: repeat with --page-token ")
    token = hint.rsplit(" ", 1)[1]
    second = live_dev.wfe(*page, "--page-token", token, "--json", tenant="demo-enterprise")
    rest = json.loads(second.stdout)
    assert [w["name"] for w in rest["workflows"]] == [f"{prefix} 1"]  # newest first
    assert "next_page_token" not in rest
