"""The README's walk-throughs run as written, against a live `wfe dev`.

The README starts with `make dev`; here it is this module's own server: `wfe dev` started in a
directory of its own, as `make dev` runs in a checkout (so its data lands in `.wfe/`), on a free
port given as WFE_LISTEN_ADDRESS, from which the README's `wfe env` line takes the address it
exports. A section's commands then run in order in one bash, in a fresh directory that holds
only `.venv` and `.wfe` (links to the ones the server uses) and the files the section says to
save (a ```yaml or ```json block after a line ending in "`NAME`:"). Each ```sh block must exit
0 and print what the block after it shows (a ```text or ```json block, optionally in
<details>), ids and times aside; then the ids the commands kept are checked in what they
printed. The Quick start block is not run: it is `make dev` and `make test` themselves.

The grpcurl section runs the same way, with grpcurl where it is installed and elsewhere with
`tests/grpcurl_stand_in.py` in its place (its JSON compared as values, since key order and
number spelling are the printer's).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.workflows import documents
from service.workflows.validation import validate_workflow
from tests.test_cli import free_port, wait_for_health
from tests.test_readme import section
from tiers import PLANS, Tier

WALKTHROUGH = "Your first workflow, end to end"
GRPCURL = "Calling it with grpcurl"

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SAVE_AS = re.compile(r"`([\w.-]+)`:$")
COLLAPSIBLE = re.compile(r"</?details>|<summary>.*?</summary>", re.DOTALL)
ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TIME = re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?Z")
KEPT = ("WFE_ADDRESS", "WFE_TENANT", "WORKFLOW_ID", "EXECUTION_ID")  # what the commands set
WALK_SECONDS = 90


@dataclass
class Block:
    """A ```sh block and the output the README shows for it, if it shows any."""

    commands: str
    shows: str | None = None
    shown_as: str = ""  # the language of the block that shows it: text or json


@dataclass
class Walk:
    """A section's files to save and its command blocks, in order."""

    files: dict[str, str] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Ran:
    """What each block that ran printed, how the shell ended, and the variables it kept."""

    stdout: list[str]
    stderr: list[str]
    returncode: int
    shell_stderr: str  # bash's own complaints, outside any block
    kept: dict[str, str]

    def output_of(self, steps: Walk, command: str) -> str:
        """What the block holding `command` printed."""
        number = next(n for n, block in enumerate(steps.blocks) if command in block.commands)
        return self.stdout[number]


def walk(title: str) -> Walk:
    """The files and command blocks of the README's section `title` (see the module's doc)."""
    text = section(title)
    found = Walk()
    position = 0
    for fence in FENCE.finditer(text):
        before = text[position : fence.start()].strip()
        position = fence.end()
        language, body = fence.group(1), fence.group(2)
        saved = SAVE_AS.search(before.splitlines()[-1]) if before else None
        if saved:
            found.files[saved.group(1)] = body
        elif language == "sh":
            found.blocks.append(Block(body))
        elif found.blocks and found.blocks[-1].shows is None and not COLLAPSIBLE.sub("", before):
            found.blocks[-1].shows, found.blocks[-1].shown_as = body, language
    return found


def masked(text: str) -> str:
    """`text` with ids and times as placeholders."""
    return TIME.sub("<time>", ID.sub("<id>", text))


def comparable(text: str, language: str) -> object:
    """What must be equal in what a block printed and what the README shows: JSON as a value,
    text with every run of white space as one space."""
    return json.loads(masked(text)) if language == "json" else " ".join(masked(text).split())


def run(steps: Walk, directory: Path, env: dict[str, str]) -> Ran:
    """Every block in one bash, in order, stopping at the first command that fails."""
    for name, body in steps.files.items():
        (directory / name).write_text(body)
    logs = directory.parent / f"{directory.name}-logs"
    logs.mkdir()
    script = ["set -e", "trap 'echo \"exit $? from: $BASH_COMMAND\" >&2' ERR"]
    for number, block in enumerate(steps.blocks):
        script.append(f"{{\n{block.commands}\n}} >{logs}/{number}.out 2>{logs}/{number}.err")
    script.append(f'for name in {" ".join(KEPT)}; do echo "$name=${{!name-}}"; done >{logs}/kept')
    finished = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WALK_SECONDS,
        check=False,
    )
    ran = [n for n in range(len(steps.blocks)) if (logs / f"{n}.out").exists()]
    kept = (logs / "kept").read_text().splitlines() if (logs / "kept").exists() else []
    return Ran(
        [(logs / f"{n}.out").read_text() for n in ran],
        [(logs / f"{n}.err").read_text() for n in ran],
        finished.returncode,
        finished.stderr,
        dict(line.split("=", 1) for line in kept),
    )


def assert_as_shown(steps: Walk, ran: Ran) -> None:
    """Every block ran and exited 0, and printed what the README shows for it."""
    if ran.returncode != 0 or len(ran.stdout) != len(steps.blocks):
        failed = max(len(ran.stdout) - 1, 0)
        printed = ran.stdout[failed] if ran.stdout else ""
        complained = (ran.stderr[failed] if ran.stderr else "") + ran.shell_stderr
        pytest.fail(
            f"README block {failed + 1} of {len(steps.blocks)} failed (exit {ran.returncode}):\n"
            f"{steps.blocks[failed].commands}\nstdout:\n{printed}\nstderr:\n{complained}"
        )
    for number, (block, printed) in enumerate(zip(steps.blocks, ran.stdout, strict=True)):
        if block.shows is not None:
            shown = comparable(block.shows, block.shown_as)
            assert comparable(printed, block.shown_as) == shown, (
                f"README block {number + 1} printed something else than the README shows:\n"
                f"{block.commands}\nprinted:\n{printed}"
            )


def value(view: str, name: str) -> str:
    """The value of a `name: value` line in a detail view the CLI prints."""
    found = re.search(rf"^{re.escape(name)}: +(.*)$", view, re.MULTILINE)
    assert found is not None, f"no {name} in:\n{view}"
    return found.group(1)


@dataclass
class ReadmeDev:
    """The running `wfe dev`, the directory it runs in, and a shell environment that finds it."""

    address: str
    home: Path
    env: dict[str, str]

    def fresh_directory(self, root: Path) -> Path:
        """An empty directory with the checkout's `.venv` and the server's `.wfe`, as links."""
        root.mkdir()
        (root / ".venv").symlink_to(self.home / ".venv")
        (root / ".wfe").symlink_to(self.home / ".wfe")
        return root


@pytest.fixture(scope="module")
def readme_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeDev]:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "wfe").exists():
        pytest.fail(f"no `wfe` command in {venv}: install the package (make dev does)")
    home = tmp_path_factory.mktemp("checkout")
    (home / ".venv").symlink_to(venv)
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env["WFE_LISTEN_ADDRESS"] = address
    with (home / "dev.log").open("w") as log:
        process = subprocess.Popen(
            [str(home / ".venv" / "bin" / "wfe"), "dev"],
            cwd=home,
            env={
                **env,
                "WFE_SHUTDOWN_GRACE_SECONDS": "1",
                "WFE_GATEWAY_LISTEN_ADDRESS": "127.0.0.1:0",  # dev's gateway: any free port
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_health(address, process, (home / "dev.log").read_text)
        yield ReadmeDev(address, home, env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def walkthrough_workflow() -> dict[str, Any]:
    """The walk-through's `hello.yaml`, in the stored form Create takes."""
    text = walk(WALKTHROUGH).files["hello.yaml"]
    return documents.definition_of(documents.load_document(text))


def test_walkthrough_workflow_is_a_valid_free_tier_definition_with_no_warning() -> None:
    report = validate_workflow(walkthrough_workflow(), PLANS[Tier.FREE])
    assert (report.errors, report.warnings) == ([], [])


def test_grpcurl_request_creates_the_walkthrough_workflow() -> None:
    request = json.loads(walk(GRPCURL).files["hello.json"])
    sent = documents.load_document(json.dumps(request["workflow"]))
    assert documents.definition_of(sent) == walkthrough_workflow()


def test_walkthrough_takes_hello_from_a_file_to_its_greeting_with_the_cli(
    readme_dev: ReadmeDev, tmp_path: Path
) -> None:
    steps = walk(WALKTHROUGH)
    assert "hello.yaml" in steps.files
    ran = run(steps, readme_dev.fresh_directory(tmp_path / "walkthrough"), readme_dev.env)

    assert_as_shown(steps, ran)
    assert (ran.kept["WFE_ADDRESS"], ran.kept["WFE_TENANT"]) == (readme_dev.address, "demo-free")
    workflow_id, execution_id = ran.kept["WORKFLOW_ID"], ran.kept["EXECUTION_ID"]
    assert ID.fullmatch(workflow_id) and ID.fullmatch(execution_id), ran.kept
    active = ran.output_of(steps, "wfe workflow activate")
    assert (value(active, "id"), value(active, "status")) == (workflow_id, "active")
    done = ran.output_of(steps, "wfe execution get")
    assert value(done, "id") == execution_id
    assert value(done, "workflow") == f"{workflow_id} (version 1)"
    assert value(done, "status") == "completed"
    assert value(done, "result") == '{"greeting":"Hello","to":"Ada"}'


def with_grpcurl(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    """`env` as it is where grpcurl is installed; elsewhere, with the stand-in first on PATH."""
    if shutil.which("grpcurl", path=env.get("PATH")):
        return env
    bin_dir.mkdir()
    stand_in = bin_dir / "grpcurl"
    root = shlex.quote(str(Path(__file__).resolve().parent.parent))
    stand_in.write_text(
        f"#!/bin/sh\nPYTHONPATH={root} exec {shlex.quote(sys.executable)}"
        ' -m tests.grpcurl_stand_in "$@"\n'
    )
    stand_in.chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def test_grpcurl_section_takes_the_same_path_with_grpcurl(
    readme_dev: ReadmeDev, tmp_path: Path
) -> None:
    steps = walk(GRPCURL)
    assert "hello.json" in steps.files
    env = with_grpcurl(readme_dev.env, tmp_path / "bin")
    ran = run(steps, readme_dev.fresh_directory(tmp_path / "grpcurl"), env)

    assert_as_shown(steps, ran)
    assert (ran.kept["WFE_ADDRESS"], ran.kept["WFE_TENANT"]) == (readme_dev.address, "demo-pro")
    workflow = json.loads(ran.output_of(steps, "ActivateWorkflow"))["workflow"]
    assert workflow["id"] == ran.kept["WORKFLOW_ID"]
    assert workflow["status"] == "WORKFLOW_STATUS_ACTIVE"
    execution = json.loads(ran.stdout[-1])["execution"]
    assert execution["id"] == ran.kept["EXECUTION_ID"]
    assert execution["status"] == "EXECUTION_STATUS_COMPLETED"
    assert execution["result"] == {"greeting": "Hello", "to": "Ada"}
