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

from engine.steptypes import STEP_ID_PATTERN, STEP_TYPES
from engine.tools import installed
from service.workflows.documents import parse_document
from service.workflows.templates import Template, catalog, parse_template
from service.workflows.validation import validate_workflow
from tiers import PLANS, Tier

STEP_KEYS = set("id type name config next retry on_error timeout".split())
RETRY_KEYS = set("max_attempts initial_interval backoff_coefficient max_interval".split())
RETRY_KEYS |= {"jitter", "non_retryable_codes"}
DURATION = re.compile(r"^\d+(\.\d+)?s$")
PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*)+$")
TOKEN = re.compile(
    r"""\s*(?:(?P<path>\$(?:\.[A-Za-z_][A-Za-z0-9_-]*)+)|"[^"]*"|'[^']*'|-?\d+(?:\.\d+)?"""
    r"""|==|!=|<=|>=|<|>|&&|\|\||!|\(|\)|\[|\]|,|(?:and|or|not|in|exists|true|false|null)\b)"""
)


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
    for item in (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    ):
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

    Branch chains of a parallel step do not count as run before its `next`, as in the service.
    """
    before = {step_id: set() if step_id == entry else set(steps) for step_id in steps}
    changed = True
    while changed:
        changed = False
        incoming: dict[str, list[set[str]]] = {step_id: [] for step_id in steps}
        for step_id, step in steps.items():
            for target in set(targets(step)):
                incoming[target].append(before[step_id] | {step_id})
        for step_id in steps:
            if step_id != entry and incoming[step_id]:
                merged = set.intersection(*incoming[step_id])
                changed = changed or merged != before[step_id]
                before[step_id] = merged
    return before


def problems(workflow: dict[str, Any]) -> list[str]:
    """Every structural rule the workflow breaks, as messages (empty when valid).

    Config schemas are checked by their own test; this covers what schemas cannot.
    """
    found: list[str] = []
    if not 1 <= len(workflow.get("name", "")) <= 200:
        found.append("name must be 1-200 characters")
    steps = {step["id"]: step for step in workflow["steps"]}
    if len(steps) != len(workflow["steps"]):
        found.append("step ids must be unique")
    for step_id, step in steps.items():
        if not re.match(STEP_ID_PATTERN, step_id) or set(step) - STEP_KEYS:
            found.append(f"{step_id}: bad id or unknown keys")
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
                members = chain(steps, branch)
                if "next" in steps[members[-1]] or any(
                    steps[s]["type"] == "output" for s in members
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

    remaining = {step_id for step_id, step in steps.items() if step["type"] != "loop"}
    while sources := remaining - {t for s in remaining for t in targets(steps[s])}:
        remaining -= sources
    if remaining:
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


def lowest_tier(template: Template) -> Tier:
    """The lowest tier whose plan may use `template`, read off the plans, not the file."""
    return next(tier for tier in Tier if PLANS[tier].templates >= template.access)


def test_the_catalog_has_at_least_twenty_templates() -> None:
    assert len(catalog()) >= 20


def test_professional_may_use_at_least_twenty_templates() -> None:
    """The seed's tier table: Professional uses "all (20+)" templates."""
    usable = [t for t in catalog().values() if PLANS[Tier.PROFESSIONAL].templates >= t.access]
    assert len(usable) >= 20
    assert all(lowest_tier(template) != Tier.ENTERPRISE for template in usable)


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
    for template in catalog().values():
        assert template.access == PLANS[template.tier].templates, template.id


def test_each_template_needs_exactly_its_tier_for_step_types_and_count() -> None:
    """Free: only basic types, at most 10 steps; professional: some advanced type, at most
    30; enterprise: some custom adapter step."""
    for template in catalog().values():
        steps, plan = template.workflow["steps"], PLANS[template.tier]
        levels = {STEP_TYPES[step["type"]].access for step in steps}
        assert max(levels) == plan.step_types, template.id
        limit = plan.max_steps_per_workflow
        assert limit is None or len(steps) <= limit, template.id


def test_every_step_config_and_tool_arguments_match_their_schemas() -> None:
    for template in catalog().values():
        for step in template.workflow["steps"]:
            Draft202012Validator(STEP_TYPES[step["type"]].config_schema).validate(step["config"])
            if step["type"] == "tool":
                spec = installed().spec(step["config"]["tool"])
                assert spec is not None, step["config"]["tool"]
                schema = spec.arguments_schema
                Draft202012Validator(schema).validate(step["config"].get("arguments", {}))


def test_every_input_schema_is_a_json_schema_with_required_fields() -> None:
    for template in catalog().values():
        schema = template.workflow["input_schema"]
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["required"], template.id


def test_every_template_is_a_valid_workflow() -> None:
    found = {t.id: problems(t.workflow) for t in catalog().values()}
    assert {template_id: p for template_id, p in found.items() if p} == {}


def test_every_template_passes_the_service_validator_for_its_tier() -> None:
    """Each validates with the limits of the lowest tier that may use it, so every tenant
    offered a template can create it. Only the seed's own `== true` comparison may draw a
    (simplification) warning, and the vendors' adapters of the Enterprise templates, which
    an operator installs (`wfe.tools`), an `unknown_adapter` one each here."""
    for template in catalog().values():
        assert lowest_tier(template) == template.tier, template.id
        report = validate_workflow(template.workflow, PLANS[lowest_tier(template)])
        parse_document(template.workflow)
        custom = {s["id"] for s in template.workflow["steps"] if s["type"] == "custom"}
        adapters = {("unknown_adapter", step_id) for step_id in custom}
        warnings = {(issue.code, issue.step_id) for issue in report.warnings} - adapters
        assert report.errors == [], template.id
        seed = template.id == "customer-enrichment"
        assert warnings == ({("expression_simplification", "decision")} if seed else set())


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
    steps = {step["id"]: step for step in template.workflow["steps"]}
    return [(s, steps[s]["type"], steps[s]["name"]) for s in chain(steps, "input")]


def test_intercompany_transfer_mirrors_seed_000() -> None:
    template = catalog()["intercompany-transfer"]
    sequence = _sequence(template)
    assert template.tier == Tier.FREE and len(sequence) == len(template.workflow["steps"]) == 5
    assert [kind for _, kind, _ in sequence] == ["input", "tool", "tool", "tool", "output"]
    assert [name for _, _, name in sequence[1:4]] == [
        "Creando 'Purchase Receipt' en origen",
        "Creando 'Delivery Note' desde origen",
        "Creando 'Purchase Receipt' en destino",
    ]
    for step in template.workflow["steps"][1:4]:
        assert step["config"]["tool"] == "http_request"
        assert step["config"]["arguments"]["method"] == "POST"


def test_document_processing_mirrors_seed_001() -> None:
    template = catalog()["document-processing"]
    steps = {step["id"]: step for step in template.workflow["steps"]}
    assert template.tier == Tier.PROFESSIONAL
    sequence = "input upload process processing_completed index notify output".split()
    assert [step_id for step_id, _, _ in _sequence(template)] == sequence
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
    assert [(s["id"], s["type"], s["name"]) for s in template.workflow["steps"]] == [
        ("input", "input", "Input"),
        ("lookup", "tool", "Customer Lookup"),
        ("enrich_data", "tool", "Data Enrichment"),
        ("decision", "condition", "Check Enrichment Success"),
        ("output_success", "output", "Enriched Customer"),
        ("output_failure", "output", "Enrichment Failed"),
    ]
    assert [s for s, _, _ in _sequence(template)] == ["input", "lookup", "enrich_data", "decision"]
    assert template.workflow["steps"][3]["config"] == {
        "conditions": [{"condition": "$.enrich_data.success == true", "next": "output_success"}],
        "default": "output_failure",
    }
