"""The built-in template catalog: its size and tiers, and every template's validity.

The structural rules (references, reachability, cycles, paths to earlier steps) are
checked here independently of any service code, so a broken template fails on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from service.workflows.steptypes import STEP_ID_PATTERN, STEP_TYPES, TOOLS
from service.workflows.templates import Template, catalog, parse_template
from tiers import PLANS, StepTypeAccess, TemplateAccess, Tier

STEP_KEYS = {"id", "type", "name", "config", "next", "retry", "on_error", "timeout"}
RETRY_KEYS = {
    "max_attempts",
    "initial_interval",
    "backoff_coefficient",
    "max_interval",
    "jitter",
    "non_retryable_codes",
}
DURATION = re.compile(r"^\d+(ms|s|m|h)$")
PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*)+$")
TOKEN = re.compile(
    r"""\s*(?:(?P<path>\$(?:\.[A-Za-z_][A-Za-z0-9_-]*)+)|"[^"]*"|'[^']*'|-?\d+(?:\.\d+)?"""
    r"""|==|!=|<=|>=|<|>|&&|\|\||!|\(|\)|\[|\]|,|(?:and|or|not|in|exists|true|false|null)\b)"""
)


def steps_of(template: Template) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = template.workflow["steps"]
    return steps


def targets(step: dict[str, Any]) -> Iterator[str]:
    """Every step id `step` may pass control to."""
    config = step.get("config", {})
    if "next" in step:
        yield step["next"]
    if step["type"] == "condition":
        yield from (branch["next"] for branch in config["conditions"])
        yield from [config["default"]] if "default" in config else []
    if step["type"] == "loop":
        yield config["body"]
    if step["type"] == "parallel":
        yield from config["branches"]


def chain(steps: dict[str, dict[str, Any]], start: str) -> list[str]:
    """The step ids reached from `start` by following `next` (stops on a repeat)."""
    found: list[str] = []
    current: str | None = start
    while current in steps and current not in found:
        found.append(current)
        current = steps[current].get("next")
    return found


def paths_in(value: Any) -> Iterator[str]:
    """Paths among literals: any string starting with `$.`, at any depth."""
    if isinstance(value, str) and value.startswith("$."):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from paths_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from paths_in(item)


def condition_paths(expression: str) -> list[str]:
    """The paths an expression reads; raises AssertionError on text outside the syntax."""
    position, paths = 0, []
    while position < len(expression.rstrip()):
        match = TOKEN.match(expression, position)
        assert match and match.end() > position, f"bad condition syntax: {expression!r}"
        if match.group("path"):
            paths.append(match.group("path"))
        position = match.end()
    return paths


def available(steps: dict[str, dict[str, Any]], entry: str) -> dict[str, set[str]]:
    """Per step, the steps certain to have run before it on every path (a dataflow fixpoint).

    A parallel step's `next` comes after all its branch chains when it joins all of them.
    """
    every = set(steps)
    before = {step_id: set() if step_id == entry else set(every) for step_id in steps}
    changed = True
    while changed:
        changed = False
        incoming: dict[str, list[set[str]]] = {step_id: [] for step_id in steps}
        for step_id, step in steps.items():
            done = before[step_id] | {step_id}
            for target in set(targets(step)):
                extra: set[str] = set()
                config = step["config"]
                is_join = step["type"] == "parallel" and config.get("join", "all") == "all"
                if is_join and target == step.get("next"):
                    extra = {s for branch in config["branches"] for s in chain(steps, branch)}
                incoming[target].append(done | extra)
        for step_id in steps:
            if step_id == entry or not incoming[step_id]:
                continue
            merged = set.intersection(*incoming[step_id])
            if merged != before[step_id]:
                before[step_id], changed = merged, True
    return before


def problems(workflow: dict[str, Any]) -> list[str]:
    """Every rule the workflow breaks, as readable messages (empty when valid)."""
    found: list[str] = []
    if not 1 <= len(workflow.get("name", "")) <= 200:
        found.append("name must be 1-200 characters")
    Draft202012Validator.check_schema(workflow["input_schema"])
    if workflow["input_schema"].get("type") != "object" or not workflow["input_schema"].get(
        "required"
    ):
        found.append("input_schema must be an object schema with required fields")
    steps = {step["id"]: step for step in workflow["steps"]}
    if len(steps) != len(workflow["steps"]):
        found.append("step ids must be unique")
    for step_id, step in steps.items():
        kind = STEP_TYPES[step["type"]]
        if not re.match(STEP_ID_PATTERN, step_id) or set(step) - STEP_KEYS:
            found.append(f"{step_id}: bad id or unknown keys")
        for error in Draft202012Validator(kind.config_schema).iter_errors(step["config"]):
            found.append(f"{step_id}: config {error.message}")
        if step["type"] == "tool":
            tool = TOOLS[step["config"]["tool"]]
            arguments = step["config"].get("arguments", {})
            for error in Draft202012Validator(tool.arguments_schema).iter_errors(arguments):
                found.append(f"{step_id}: arguments {error.message}")
        if step.get("on_error", "fail") not in {"fail", "retry", "continue"}:
            found.append(f"{step_id}: bad on_error")
        retry = step.get("retry", {})
        intervals = [retry.get("initial_interval", "1s"), retry.get("max_interval", "1s")]
        if set(retry) - RETRY_KEYS or not all(DURATION.match(i) for i in intervals):
            found.append(f"{step_id}: bad retry policy")
        if not DURATION.match(step.get("timeout", "1s")):
            found.append(f"{step_id}: bad timeout")
        if step["type"] == "condition" and "default" not in step["config"]:
            found.append(f"{step_id}: condition without default")
        if step["type"] == "output" and "next" in step:
            found.append(f"{step_id}: output steps end a path")
        found += [f"{step_id}: unknown step {t!r}" for t in targets(step) if t not in steps]
    if found:
        return found

    entries = [step_id for step_id, step in steps.items() if step["type"] == "input"]
    if len(entries) != 1:
        return [*found, "there must be exactly one input step"]
    branch_steps = {
        member
        for step in steps.values()
        if step["type"] == "parallel"
        for branch in step["config"]["branches"]
        for member in chain(steps, branch)
    }
    for step_id, step in steps.items():
        if step["type"] == "parallel":
            for branch in step["config"]["branches"]:
                ends = steps[chain(steps, branch)[-1]]
                if "next" in ends or any(
                    steps[s]["type"] == "output" for s in chain(steps, branch)
                ):
                    found.append(f"{step_id}: branch {branch} must end without next or output")
        if step["type"] == "loop" and step_id not in chain(steps, step["config"]["body"]):
            found.append(f"{step_id}: loop body must return to the loop step")
        stops = step["type"] in {"output", "condition"} or step_id in branch_steps
        if "next" not in step and not stops:
            found.append(f"{step_id}: needs next")

    reached, frontier = {entries[0]}, [entries[0]]
    while frontier:
        for target in targets(steps[frontier.pop()]):
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    found += [f"{step_id}: unreachable" for step_id in steps if step_id not in reached]
    if not any(steps[step_id]["type"] == "output" for step_id in reached):
        found.append("no output step is reachable")

    without_loops = {s: step for s, step in steps.items() if step["type"] != "loop"}
    indegree = {s: 0 for s in without_loops}
    for step in without_loops.values():
        for target in targets(step):
            if target in indegree:
                indegree[target] += 1
    ready = [s for s, degree in indegree.items() if degree == 0]
    while ready:
        for target in targets(without_loops[ready.pop()]):
            if target in indegree:
                indegree[target] -= 1
                ready += [target] if indegree[target] == 0 else []
    if any(indegree.values()):
        found.append("a cycle does not pass through a loop step")

    before = available(steps, entries[0])
    for step_id, step in steps.items():
        config = step["config"]
        read = list(paths_in(config.get("values", {}))) + list(paths_in(config.get("arguments")))
        read += [config[key] for key in ("over", "until") if key in config]
        read += config.get("sources", [])
        for branch in config.get("conditions", []):
            read += condition_paths(branch["condition"])
        for path in read:
            root = path.split(".")[1]
            if not PATH.match(path) or (root != "input" and root not in before[step_id]):
                found.append(f"{step_id}: {path} does not name an earlier step")
    return found


def test_the_catalog_has_at_least_twenty_templates() -> None:
    assert len(catalog()) >= 20


def test_exactly_five_templates_are_free_and_at_least_three_enterprise() -> None:
    tiers = [template.tier for template in catalog().values()]
    assert tiers.count(Tier.FREE) == 5 == PLANS[Tier.FREE].max_templates
    assert tiers.count(Tier.ENTERPRISE) >= 3
    assert tiers.count(Tier.PROFESSIONAL) > tiers.count(Tier.FREE)


def test_ids_are_unique_and_equal_the_file_stems() -> None:
    directory = resources.files("service.workflows").joinpath("catalog")
    stems = sorted(e.name.removesuffix(".yaml") for e in directory.iterdir() if e.is_file())
    assert sorted(catalog()) == stems
    assert all(template_id == template.id for template_id, template in catalog().items())


def test_the_catalog_is_ordered_by_tier_then_id_and_loaded_once() -> None:
    order = [(list(Tier).index(t.tier), t.id) for t in catalog().values()]
    assert order == sorted(order)
    assert catalog() is catalog()


def test_access_follows_the_tier() -> None:
    expected = {
        Tier.FREE: TemplateAccess.BASIC,
        Tier.PROFESSIONAL: TemplateAccess.STANDARD,
        Tier.ENTERPRISE: TemplateAccess.ALL_AND_CUSTOM,
    }
    for template in catalog().values():
        assert template.access == expected[template.tier]
        assert template.access <= PLANS[template.tier].templates


def test_free_templates_use_only_basic_types_within_ten_steps() -> None:
    for template in catalog().values():
        if template.tier == Tier.FREE:
            kinds = {STEP_TYPES[step["type"]].access for step in steps_of(template)}
            assert kinds == {StepTypeAccess.BASIC}, template.id
            assert len(steps_of(template)) <= 10, template.id


def test_professional_templates_need_their_tier_and_fit_thirty_steps() -> None:
    for template in catalog().values():
        if template.tier == Tier.PROFESSIONAL:
            kinds = {STEP_TYPES[step["type"]].access for step in steps_of(template)}
            assert max(kinds) == StepTypeAccess.ADVANCED, template.id
            assert len(steps_of(template)) <= 30, template.id


def test_enterprise_templates_call_custom_adapters() -> None:
    for template in catalog().values():
        if template.tier == Tier.ENTERPRISE:
            custom = [step for step in steps_of(template) if step["type"] == "custom"]
            assert custom, template.id
            assert all("." in step["config"]["adapter"] for step in custom), template.id


def test_every_template_is_a_valid_workflow() -> None:
    found = {t.id: problems(t.workflow) for t in catalog().values()}
    assert {template_id: p for template_id, p in found.items() if p} == {}


def test_the_validity_checks_catch_broken_workflows() -> None:
    workflow = catalog()["customer-enrichment"].workflow
    broken = {**workflow, "steps": [dict(step) for step in workflow["steps"]]}
    broken["steps"][1]["config"] = {
        "tool": "log",
        "arguments": {"message": "$.enrich_data.success"},
    }
    broken["steps"][3] = {**broken["steps"][3], "config": {"conditions": []}}
    assert {message.split(":")[0] for message in problems(broken)} == {"decision"}
    broken["steps"][3] = workflow["steps"][3]
    assert problems(broken) == ["lookup: $.enrich_data.success does not name an earlier step"]


def test_templates_have_no_placeholders() -> None:
    for template in catalog().values():
        text = repr(template).lower()
        assert not re.search(r"todo|fixme|xxx|lorem|changeme|<[a-z_]+>", text), template.id
        urls = re.findall(r"https?://([^/'\"]+)", text)
        assert all(host.endswith("example.com") for host in urls), template.id


def test_a_malformed_file_raises_naming_it() -> None:
    good = "id: x\nname: X\ndescription: d\ncategory: data\ntier: free\nworkflow: {steps: []}\n"
    assert parse_template("catalog/x.yaml", good).tier == Tier.FREE
    for text in (
        "id: [unclosed",
        "- a list",
        good.replace("tier: free", "tier: gold"),
        good.replace("id: x", "id: y"),
        good.replace("name: X\n", ""),
        good.replace("{steps: []}", "{}"),
    ):
        with pytest.raises(ValueError, match=r"^catalog/x\.yaml: "):
            parse_template("catalog/x.yaml", text)


def _sequence(template: Template) -> list[tuple[str, str, str]]:
    steps = {step["id"]: step for step in steps_of(template)}
    return [(s, steps[s]["type"], steps[s]["name"]) for s in chain(steps, "input")]


def test_intercompany_transfer_mirrors_seed_000() -> None:
    template = catalog()["intercompany-transfer"]
    sequence = _sequence(template)
    assert template.tier == Tier.FREE and len(sequence) == len(steps_of(template)) == 5
    assert [kind for _, kind, _ in sequence] == ["input", "tool", "tool", "tool", "output"]
    assert [name for _, _, name in sequence[1:4]] == [
        "Creando 'Purchase Receipt' en origen",
        "Creando 'Delivery Note' desde origen",
        "Creando 'Purchase Receipt' en destino",
    ]
    for step in steps_of(template)[1:4]:
        assert step["config"]["tool"] == "http_request"
        assert step["config"]["arguments"]["method"] == "POST"


def test_document_processing_mirrors_seed_001() -> None:
    template = catalog()["document-processing"]
    steps = {step["id"]: step for step in steps_of(template)}
    assert template.tier == Tier.PROFESSIONAL
    assert [s for s, _, _ in _sequence(template)] == [
        "input",
        "upload",
        "process",
        "processing_completed",
        "index",
        "notify",
        "output",
    ]
    assert steps["processing_completed"]["type"] == "webhook"
    assert steps["upload"]["on_error"] == "fail"
    assert steps["process"]["on_error"] == "retry"
    assert steps["process"]["retry"]["backoff_coefficient"] > 1
    assert steps["process"]["retry"]["max_attempts"] > 1
    assert steps["notify"]["on_error"] == "continue"
    assert steps["output"]["type"] == "output"


def test_customer_enrichment_mirrors_seed_004() -> None:
    template = catalog()["customer-enrichment"]
    assert template.tier == Tier.FREE
    assert [(s["id"], s["type"], s["name"]) for s in steps_of(template)] == [
        ("input", "input", "Input"),
        ("lookup", "tool", "Customer Lookup"),
        ("enrich_data", "tool", "Data Enrichment"),
        ("decision", "condition", "Check Enrichment Success"),
        ("output_success", "output", "Enriched Customer"),
        ("output_failure", "output", "Enrichment Failed"),
    ]
    assert [s for s, _, _ in _sequence(template)] == ["input", "lookup", "enrich_data", "decision"]
    assert steps_of(template)[3]["config"] == {
        "conditions": [{"condition": "$.enrich_data.success == true", "next": "output_success"}],
        "default": "output_failure",
    }
