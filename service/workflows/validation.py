"""Validation of whole definitions and single steps, against the rules and the tenant's plan.

The validator never raises on any input: every problem becomes an `Issue` naming the
step or field it concerns, and Create/Update accept exactly what it calls valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine import schemas
from engine.sizes import encoded_size
from engine.tools import ToolCatalog
from service.workflows.issues import Report
from service.workflows.outputs import missing_field
from service.workflows.scopes import check_scopes
from service.workflows.steps import INPUT_ROOT, Reference, StepFacts, check_step
from tiers import PlanLimits
from tiers.plans import MAX_STEPS_CEILING

MAX_NAME_LENGTH = 200


def validate_workflow(
    definition: Mapping[str, Any], limits: PlanLimits | None, tools: ToolCatalog | None = None
) -> Report:
    """Every error and warning of a workflow definition (name, input_schema, steps).

    `tools` are the tools its steps may call; the installed ones by default.
    """
    report = Report()
    if not isinstance(definition, Mapping):
        report.error("invalid_field", "a workflow definition is an object", field="workflow")
        return report
    if _over_plan(definition, limits, report):
        return report
    name = definition.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME_LENGTH:
        report.error("invalid_field", f"name is 1 to {MAX_NAME_LENGTH} characters", field="name")
    _check_input_schema(definition.get("input_schema"), "input_schema", report)
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps:
        report.error("missing_steps", "a workflow needs at least one step", field="steps")
        return report
    facts: dict[str, StepFacts] = {}
    for index, step in enumerate(steps):
        found = check_step(step, f"steps[{index}]", limits, report, tools)
        if found is None or not found.id:
            continue
        if found.id in facts:
            report.error(
                "duplicate_step_id",
                f"step id {found.id!r} is used more than once",
                step_id=found.id,
                field=f"steps[{index}].id",
            )
            continue
        facts[found.id] = found
    _check_graph(facts, definition.get("input_schema"), report)
    return report


def too_many_steps(count: int, limits: PlanLimits | None) -> Report | None:
    """The one violation of a workflow with more steps than the plan allows, if it has."""
    maximum = limits.steps_allowed if limits else MAX_STEPS_CEILING
    if count <= maximum:
        return None
    report = Report()
    report.error(
        "tier_restriction",
        f"{count} steps exceed the plan's {maximum} steps per workflow",
        field="steps",
    )
    return report


def _over_plan(definition: Mapping[str, Any], limits: PlanLimits | None, report: Report) -> bool:
    """One `tier_restriction` when the definition is too big to check at all (then check nothing
    more): more steps than the plan allows, or more bytes."""
    steps = definition.get("steps")
    refused = too_many_steps(len(steps), limits) if isinstance(steps, list) else None
    if refused is not None:
        report.errors.extend(refused.errors)
        return True
    if limits is None:
        return False
    size = encoded_size(definition)
    if size > limits.max_definition_bytes:
        report.error(
            "tier_restriction",
            f"the definition is {size} bytes as compact JSON; the plan allows "
            f"{limits.max_definition_bytes}",
            field="workflow",
        )
        return True
    return False


def validate_step(
    step: object,
    available_steps: Sequence[str],
    input_schema: object,
    limits: PlanLimits | None,
    tools: ToolCatalog | None = None,
) -> Report:
    """Check one step as an editor draws it; its edges and paths may name `available_steps`."""
    report = Report()
    size = encoded_size(step)
    if limits is not None and size > limits.max_definition_bytes:
        report.error(
            "tier_restriction",
            f"the step is {size} bytes as compact JSON; the plan allows "
            f"{limits.max_definition_bytes} for a whole definition",
            field="step",
        )
        return report
    _check_input_schema(input_schema, "context.input_schema", report)
    facts = check_step(step, "step", limits, report, tools)
    if facts is None:
        return report
    known = {*available_steps, facts.id}
    for target, field in facts.edges:
        if target not in known:
            report.error(
                "unknown_step_reference",
                f"{target!r} is not a step of this workflow",
                step_id=facts.id,
                field=field,
            )
    for reference in facts.references:
        root = reference.path.root
        if root != INPUT_ROOT and root not in known:
            _unknown_path(reference, facts.id, report)
    return report


def _unknown_path(reference: Reference, step_id: str, report: Report) -> None:
    report.error(
        "unknown_path_reference",
        f"path {reference.path.render()} names no step of this workflow",
        step_id=step_id,
        field=reference.field,
        position=reference.path.position,
    )


def _check_input_schema(schema: object, field: str, report: Report) -> None:
    if schema is None or schema == {}:
        return
    if not isinstance(schema, Mapping):
        report.error(
            "invalid_input_schema", "input_schema must be a JSON Schema object", field=field
        )
        return
    for problem in schemas.check_schema(schema):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem.path)
        report.error("invalid_input_schema", problem.message, field=field + path)


def _check_graph(facts: dict[str, StepFacts], input_schema: object, report: Report) -> None:
    successors: dict[str, list[str]] = {step_id: [] for step_id in facts}
    for step in facts.values():
        for target, field in step.edges:
            if target in facts:
                successors[step.id].append(target)
            else:
                report.error(
                    "unknown_step_reference",
                    f"{target!r} is not a step of this workflow",
                    step_id=step.id,
                    field=field,
                )
    entries = [step.id for step in facts.values() if step.type == "input"]
    if not entries:
        report.error("missing_entry_step", "a workflow needs exactly one input step", field="steps")
    for extra in entries[1:]:
        report.error(
            "multiple_entry_steps",
            f"step {extra!r} is a second input step; a workflow has exactly one entry",
            step_id=extra,
            field="steps",
        )
    _check_cycles(facts, report)
    check_scopes(facts, successors, report)
    if not entries:
        return
    reachable = _reachable(entries[:1], successors)
    for step_id in facts:
        if step_id not in reachable:
            report.warn(
                "unreachable_step",
                f"step {step_id!r} can never run: nothing leads to it from {entries[0]!r}",
                step_id=step_id,
            )
    if not any(facts[step_id].type == "output" for step_id in reachable):
        report.error(
            "no_reachable_output", "no output step can be reached from the entry", field="steps"
        )
    for step_id in entries[:1]:
        facts[step_id].output_schema = input_schema if isinstance(input_schema, Mapping) else None
    _check_references(facts, successors, report)
    _check_output_fields(facts, input_schema, report)


def _check_output_fields(facts: dict[str, StepFacts], input_schema: object, report: Report) -> None:
    """Warn when a path reads a field that its step's output provably never has."""
    for step in facts.values():
        for reference in step.references:
            root = reference.path.root
            if root == INPUT_ROOT:
                schema: object = input_schema
            elif root in facts:
                schema = facts[root].output_schema
            else:
                continue
            missing = missing_field(schema, reference.path.segments[1:])
            if missing is None:
                continue
            source = "the input" if root == INPUT_ROOT else f"step {root!r}"
            report.warn(
                "unknown_output_field",
                f"path {reference.path.render()} reads {missing.field!r}, which {source} never "
                f"produces; its fields there: {', '.join(missing.known) or 'none'}",
                step_id=step.id,
                field=reference.field,
                position=reference.path.position,
            )


def _reachable(starts: Sequence[str], successors: Mapping[str, Sequence[str]]) -> set[str]:
    """`starts` and every step an edge path leads to from them."""
    seen, pending = set(starts), list(starts)
    while pending:
        for target in successors[pending.pop()]:
            if target not in seen:
                seen.add(target)
                pending.append(target)
    return seen


def _check_references(
    facts: dict[str, StepFacts], successors: Mapping[str, Sequence[str]], report: Report
) -> None:
    bit = {step_id: 1 << index for index, step_id in enumerate(facts)}
    before = _before(facts, successors, bit)
    for step in facts.values():
        for reference in step.references:
            root = reference.path.root
            if root == INPUT_ROOT or (root in bit and before[step.id] & bit[root]):
                continue
            if root not in facts:
                _unknown_path(reference, step.id, report)
            else:
                report.warn(
                    "reference_not_before",
                    f"path {reference.path.render()} reads step {root!r}, "
                    f"which cannot have run before {step.id!r}",
                    step_id=step.id,
                    field=reference.field,
                    position=reference.path.position,
                )


def _before(
    facts: dict[str, StepFacts], successors: Mapping[str, Sequence[str]], bit: Mapping[str, int]
) -> dict[str, int]:
    """For each step, the steps that can have run before it, as bits of `bit`.

    A step on a loop counts itself: its previous iteration has run. What follows a parallel
    step runs after its branches and everything they lead to, though no edge says so.
    One pass over the graph with integers as bit sets keeps this linear in its size, where
    a walk per step was quadratic.
    """
    leads_to = _closure(successors, bit)
    predecessors: dict[str, list[str]] = {step_id: [] for step_id in facts}
    for source, targets in successors.items():
        for target in targets:
            predecessors[target].append(source)
    joined = dict.fromkeys(facts, 0)
    for step in facts.values():
        if step.type != "parallel":
            continue
        branches = [t for t, field in step.edges if ".branches[" in field and t in facts]
        for after in (t for t, field in step.edges if field.endswith(".next") and t in facts):
            for branch in branches:
                joined[after] |= (bit[branch] | leads_to[branch]) & ~bit[after]
                predecessors[after].append(branch)
    return _closure(predecessors, bit, joined)


def _closure(
    edges: Mapping[str, Sequence[str]], bit: Mapping[str, int], extra: Mapping[str, int] = {}
) -> dict[str, int]:
    """What each node reaches through `edges` (itself only on a cycle) and their `extra`."""
    reach: dict[str, int] = {}
    component_of: dict[str, int] = {}
    for number, component in enumerate(_components(edges)):  # each after those it reaches
        for member in component:
            component_of[member] = number
        found = 0
        for member in component:
            found |= extra.get(member, 0)
            for target in edges[member]:
                if component_of.get(target) != number:
                    found |= bit[target] | reach[target]
        if _cyclic(component, edges):
            for member in component:
                found |= bit[member]
        for member in component:
            reach[member] = found
    return reach


def _cyclic(component: Sequence[str], edges: Mapping[str, Sequence[str]]) -> bool:
    return len(component) > 1 or component[0] in edges[component[0]]


def _check_cycles(facts: dict[str, StepFacts], report: Report) -> None:
    """Only a loop's body may lead back: any cycle left without the body edges is refused."""
    without_bodies = {
        step.id: [
            target
            for target, field in step.edges
            if target in facts and not (step.type == "loop" and field.endswith(".config.body"))
        ]
        for step in facts.values()
    }
    position = {step_id: index for index, step_id in enumerate(facts)}
    for component in _components(without_bodies):
        if not _cyclic(component, without_bodies):
            continue
        ordered = sorted(component, key=position.__getitem__)
        report.error(
            "invalid_cycle",
            f"steps {' -> '.join(ordered)} form a cycle that no loop step's body makes; "
            "only a loop may repeat steps",
            step_id=ordered[0],
        )


def _components(successors: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iteratively), each after every one it leads to."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in successors:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = successors[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found
