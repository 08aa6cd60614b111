"""Test runs (TestExecute): fixtures in place of calls, and the trace of what each step did.

A test run is an execution marked `test`. Its definition is a copy in which each step
given a fixture carries it (`runner.FIXTURE`): the step records the fixture as its output
and calls nothing. Each attempt keeps what it saw (`keep`): the resolved input, the
conditions it evaluated with the values their paths read, its log lines. `trace_of` turns
the attempts into the answer, in the detail the plan's log level allows.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final

from engine.graph import Graph
from engine.instances import base
from engine.rows import AttemptRow, ExecutionRow
from engine.runner import FIXTURE
from engine.sizes import encoded_size
from engine.tools import ToolCall
from foundation.errors import FieldViolation, InvalidInput
from persistence.models import AttemptStatus
from tiers import LogDetail, TenantPlan

FIXTURED_TYPES: Final = frozenset({"tool", "custom", "webhook"})


def keep(attempt: AttemptRow, call: ToolCall) -> None:
    """A test run's attempt keeps what its step saw."""
    if call.trace is not None:
        attempt.trace = {**call.trace, "logs": list(call.log)}


def with_fixtures(
    definition: Mapping[str, Any], fixtures: Mapping[str, Any], plan: TenantPlan
) -> dict[str, Any]:
    """A copy of `definition` whose steps named in `fixtures` record them instead of running.

    InvalidInput for a fixture naming no step, a step that calls nothing, or one larger than
    the plan lets a step output.
    """
    graph = Graph.of(definition)
    limit = plan.limits.max_output_bytes
    for step_id, value in fixtures.items():
        field = f"fixtures[{step_id!r}]"
        if step_id not in graph.steps:
            raise InvalidInput(
                f"a fixture names {step_id!r}, which is not a step of the workflow",
                violations=[FieldViolation(field, "must name a step")],
            )
        if graph.steps[step_id].get("type") not in FIXTURED_TYPES:
            raise InvalidInput(
                f"step {step_id!r} calls nothing: only tool, custom and webhook steps take "
                "fixtures",
                violations=[FieldViolation(field, "must name a tool, custom or webhook step")],
            )
        if encoded_size(value) > limit:
            raise InvalidInput(
                f"the fixture for {step_id!r} is larger than the {limit} bytes a step may output",
                violations=[FieldViolation(field, f"at most {limit} bytes")],
            )
    copied = copy.deepcopy(dict(definition))
    for step in copied["steps"]:
        if step["id"] in fixtures:
            step[FIXTURE] = copy.deepcopy(fixtures[step["id"]])
    return copied


def trace_of(
    execution: ExecutionRow, attempts: Sequence[AttemptRow], detail: LogDetail
) -> list[dict[str, Any]]:
    """Each step run of the execution (its last attempt, the earlier ones as retries), in the
    order they started, with what `detail` shows."""
    graph = Graph.of(execution.definition)
    runs: dict[str, list[AttemptRow]] = {}
    for attempt in sorted(attempts, key=lambda a: (a.step_id, a.attempt)):
        runs.setdefault(attempt.step_id, []).append(attempt)
    entries = [_entry(graph, instance, tried, detail) for instance, tried in runs.items()]
    entries.sort(key=lambda e: (e["started_at"] is None, e["started_at"] or e["due_at"]))
    return entries


def _entry(
    graph: Graph, instance: str, tried: list[AttemptRow], detail: LogDetail
) -> dict[str, Any]:
    last = tried[-1]
    step = graph.step(instance)
    seen = last.trace or {}
    entry: dict[str, Any] = {
        "step_id": base(instance),
        "instance": instance,
        "name": graph.name(instance),
        "type": str(step.get("type", "")),
        "status": _status(last),
        "attempts": len(tried),
        "started_at": last.started_at,
        "due_at": last.due_at,
        "finished_at": last.finished_at,
        "output": last.output if last.status == AttemptStatus.COMPLETED else None,
        "error": last.error,
        "from_fixture": bool(seen.get("fixture")),
        "input": None,
        "conditions": [],
        "logs": [],
        "retries": [],
    }
    if detail >= LogDetail.STANDARD:
        entry["input"] = seen.get("input")
        entry["logs"] = list(seen.get("logs") or [])
        entry["conditions"] = [
            {"condition": c["condition"], "holds": c["holds"], "values": {}}
            for c in seen.get("conditions") or []
        ]
    if detail >= LogDetail.EXTENDED:
        entry["conditions"] = list(seen.get("conditions") or [])
    for earlier in tried[:-1]:
        entry["retries"].append(
            {
                "attempt": earlier.attempt,
                "started_at": earlier.started_at,
                "finished_at": earlier.finished_at,
                "error": earlier.error if detail >= LogDetail.EXTENDED else None,
            }
        )
    return entry


def _status(attempt: AttemptRow) -> str:
    return {
        AttemptStatus.COMPLETED: "completed",
        AttemptStatus.FAILED: "failed",
        AttemptStatus.CANCELLED: "cancelled",
        AttemptStatus.RUNNING: "in_progress",
        AttemptStatus.SCHEDULED: "pending",
    }[attempt.status]
