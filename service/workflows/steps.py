"""Checks of one step on its own: id, type, plan, config, policies, expressions and paths.

Both `ValidateStep` and whole-workflow validation start here; what a step needs from
the rest of the workflow (its edges and the steps its paths name) is returned as a
`StepFacts`, so the graph checks can judge it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine import expressions
from engine.durations import seconds
from engine.steptypes import MINIMUM_TIER, STEP_ID_PATTERN, STEP_TYPES
from engine.tools import ToolCatalog, ToolSpec, installed
from service.workflows.issues import Report
from tiers import PlanLimits

STEP_ID: Final = re.compile(STEP_ID_PATTERN)
ERROR_POLICIES: Final = ("fail", "retry", "continue")
INPUT_ROOT: Final = "input"
MAX_DURATION_SECONDS: Final = 24 * 60 * 60
"""The longest step timeout and retry interval: the longest any plan lets an execution run."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A path found in a step, with the field it sits in."""

    path: expressions.PathRef
    field: str


@dataclass(slots=True)
class StepFacts:
    """What the graph checks need of one step."""

    id: str
    type: str
    edges: list[tuple[str, str]] = field(default_factory=list)  # (target, field)
    references: list[Reference] = field(default_factory=list)
    has_default: bool = True
    output_schema: Mapping[str, Any] | None = None  # what the step's output looks like, if known


def _schema_errors(schema: dict[str, Any], value: object) -> Iterator[ValidationError]:
    yield from Draft202012Validator(schema).iter_errors(value)


def _json_path(prefix: str, parts: Sequence[object]) -> str:
    text = prefix
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def check_step(
    step: object,
    where: str,
    limits: PlanLimits | None,
    report: Report,
    tools: ToolCatalog | None = None,
) -> StepFacts | None:
    """Check `step` (found at field path `where`); None when it is not even an object.

    `tools` are the tools a `tool` step may call; the installed ones by default.
    """
    if not isinstance(step, Mapping):
        report.error("invalid_step", "a step must be an object", field=where)
        return None
    step_id = step.get("id")
    if not isinstance(step_id, str) or not STEP_ID.fullmatch(step_id):
        report.error(
            "invalid_step_id",
            "a step id is 1-63 letters, digits, '_' or '-', starting with a letter or '_'",
            step_id=step_id if isinstance(step_id, str) else "",
            field=f"{where}.id",
        )
        step_id = step_id if isinstance(step_id, str) else ""
    facts = StepFacts(id=step_id, type=str(step.get("type", "")))
    _check_type_and_config(step, facts, where, Plan(limits, tools or installed()), report)
    _check_policies(step, facts.id, where, report)
    nxt = step.get("next")
    if nxt not in (None, ""):
        if not isinstance(nxt, str):
            report.error(
                "invalid_next", "next must be a step id", step_id=facts.id, field=f"{where}.next"
            )
        elif facts.type == "condition":
            report.error(
                "invalid_next",
                "a condition step chooses what follows through its conditions and default",
                step_id=facts.id,
                field=f"{where}.next",
            )
        else:
            facts.edges.append((nxt, f"{where}.next"))
    return facts


@dataclass(frozen=True, slots=True)
class Plan:
    """What a step is checked against: the tenant's limits (None: any) and the tools."""

    limits: PlanLimits | None
    tools: ToolCatalog


CONDITION_OUTPUT: Final = {
    "type": "object",
    "properties": {"branch": {}, "next": {"type": "string"}},
    "additionalProperties": False,
}


def _check_type_and_config(
    step: Mapping[str, Any], facts: StepFacts, where: str, plan: Plan, report: Report
) -> None:
    step_type = STEP_TYPES.get(facts.type)
    if step_type is None:
        report.error(
            "unknown_step_type",
            f"unknown step type {facts.type!r}; one of {', '.join(STEP_TYPES)}",
            step_id=facts.id,
            field=f"{where}.type",
        )
        return
    if plan.limits is not None and plan.limits.step_types < step_type.access:
        report.error(
            "tier_restriction",
            f"{step_type.category} step type {facts.type!r} needs the "
            f"{MINIMUM_TIER[step_type.access]} tier or above",
            step_id=facts.id,
            field=f"{where}.type",
        )
    config = step.get("config", {})
    if config is None:
        config = {}
    invalid = False
    for error in _schema_errors(step_type.config_schema, config):
        invalid = True
        report.error(
            "invalid_config",
            error.message,
            step_id=facts.id,
            field=_json_path(f"{where}.config", list(error.absolute_path)),
        )
    if invalid or not isinstance(config, Mapping):
        return
    _collect_config(config, facts, where, plan, report)


def _collect_config(
    config: Mapping[str, Any], facts: StepFacts, where: str, plan: Plan, report: Report
) -> None:
    """Edges, expressions and paths of a config that already matches its schema."""
    at = f"{where}.config"
    if facts.type == "condition":
        facts.output_schema = CONDITION_OUTPUT
        for index, branch in enumerate(config["conditions"]):
            _expression(branch["condition"], facts, f"{at}.conditions[{index}].condition", report)
            facts.edges.append((branch["next"], f"{at}.conditions[{index}].next"))
        if "default" in config:
            facts.edges.append((config["default"], f"{at}.default"))
        else:
            facts.has_default = False
            report.error(
                "missing_default",
                "a condition needs a default for when no condition holds",
                step_id=facts.id,
                field=f"{at}.default",
            )
    elif facts.type == "loop":
        if "over" in config:
            _path(config["over"], facts, f"{at}.over", report)
        else:
            _expression(config["while"], facts, f"{at}.while", report)
            if int(config.get("concurrency", 1)) > 1:
                report.error(
                    "invalid_config",
                    "a while loop runs one iteration at a time: its condition reads the last",
                    step_id=facts.id,
                    field=f"{at}.concurrency",
                )
        facts.edges.append((config["body"], f"{at}.body"))
        limit = plan.limits.max_loop_iterations if plan.limits is not None else None
        if limit is not None and int(config.get("max_iterations", 0)) > limit:
            report.error(
                "tier_restriction",
                f"max_iterations is {config['max_iterations']}; the plan runs at most "
                f"{limit} iterations of a loop",
                step_id=facts.id,
                field=f"{at}.max_iterations",
            )
    elif facts.type == "parallel":
        for index, branch in enumerate(config["branches"]):
            facts.edges.append((branch, f"{at}.branches[{index}]"))
        join, count = config.get("join", "all"), config.get("n")
        if (join == "n_of_m") != (count is not None) or (
            count is not None and count > len(config["branches"])
        ):
            report.error(
                "invalid_config",
                "an n_of_m join needs `n`, from 1 to the number of branches; other joins take none",
                step_id=facts.id,
                field=f"{at}.n",
            )
    elif facts.type == "aggregate":
        for index, source in enumerate(config["sources"]):
            _path(source, facts, f"{at}.sources[{index}]", report)
    elif facts.type == "webhook" and isinstance(config.get("request"), Mapping):
        _check_request(config["request"], facts, f"{at}.request", plan, report)
    elif facts.type == "wait" and "until" in config:
        _path(config["until"], facts, f"{at}.until", report)
    elif facts.type in ("tool", "custom"):
        if facts.type == "tool":
            tool = _check_tool(config["tool"], facts, at, plan, report)
        else:
            tool = _check_adapter(config["adapter"], facts, at, plan, report)
        if tool is None:
            if facts.type == "custom":
                _values(config.get("arguments", {}), facts, f"{at}.arguments", report)
            return
        facts.output_schema = tool.output_schema
        arguments = config.get("arguments", {})
        for error in _schema_errors(tool.arguments_schema, arguments):
            report.error(
                "invalid_config",
                f"{tool.name}: {error.message}",
                step_id=facts.id,
                field=_json_path(f"{at}.arguments", list(error.absolute_path)),
            )
        _values(arguments, facts, f"{at}.arguments", report)
    for key in ("values", "arguments"):
        if facts.type not in ("tool", "custom") and isinstance(config.get(key), Mapping | list):
            _values(config[key], facts, f"{at}.{key}", report)


def _check_request(
    request: Mapping[str, Any], facts: StepFacts, at: str, plan: Plan, report: Report
) -> None:
    """A webhook's outbound call: `http_request`'s arguments, which may read the step's own
    callback token (`$.<step>.token`)."""
    tool = plan.tools.spec("http_request")
    if tool is not None:
        for error in _schema_errors(tool.arguments_schema, request):
            report.error(
                "invalid_config",
                f"request: {error.message}",
                step_id=facts.id,
                field=_json_path(at, list(error.absolute_path)),
            )
    known = len(facts.references)
    _values(request, facts, at, report)
    facts.references[known:] = [r for r in facts.references[known:] if r.path.root != facts.id]


def _check_tool(
    name: str, facts: StepFacts, at: str, plan: Plan, report: Report
) -> ToolSpec | None:
    """The spec of the tool a step calls, if it is installed and within the plan."""
    tool = plan.tools.spec(name)
    if tool is not None and tool.adapter:
        report.error(
            "invalid_config",
            f"{name!r} is a custom adapter: a custom step calls it",
            step_id=facts.id,
            field=f"{at}.tool",
        )
        return None
    if tool is None:
        installed_names = ", ".join(s.name for s in plan.tools.specs() if not s.adapter) or "none"
        report.error(
            "invalid_config",
            f"no tool named {name!r} is installed; installed tools: {installed_names}",
            step_id=facts.id,
            field=f"{at}.tool",
        )
        return None
    if plan.limits is not None and plan.limits.step_types < tool.access:
        report.error(
            "tier_restriction",
            f"the tool {name!r} needs the {tool.minimum_tier} tier or above",
            step_id=facts.id,
            field=f"{at}.tool",
        )
    return tool


def _check_adapter(
    name: str, facts: StepFacts, at: str, plan: Plan, report: Report
) -> ToolSpec | None:
    """The spec of the adapter a custom step calls, if it is installed and enabled.

    One not installed here is a warning, not an error: catalog templates name vendors'
    adapters that an operator installs; such a step fails with `unknown_tool` if it runs.
    """
    adapter = plan.tools.spec(name)
    if adapter is None or not adapter.adapter:
        known = ", ".join(s.name for s in plan.tools.specs() if s.adapter) or "none"
        report.warn(
            "unknown_adapter",
            f"no adapter named {name!r} is installed; installed adapters: {known}",
            step_id=facts.id,
            field=f"{at}.adapter",
        )
        return None
    if plan.limits is not None and name not in plan.limits.adapters:
        report.error(
            "tier_restriction",
            f"the adapter {name!r} is not enabled for this tenant",
            step_id=facts.id,
            field=f"{at}.adapter",
        )
    return adapter


def _values(value: object, facts: StepFacts, where: str, report: Report) -> None:
    """Strings starting with `$` inside literal structures are paths."""
    if isinstance(value, str) and value.startswith("$"):
        _path(value, facts, where, report)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _values(item, facts, f"{where}.{key}", report)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _values(item, facts, f"{where}[{index}]", report)


def _path(text: str, facts: StepFacts, where: str, report: Report) -> None:
    try:
        path = expressions.parse_path(text)
    except expressions.ExpressionError as error:
        report.error(
            "invalid_path", error.message, step_id=facts.id, field=where, position=error.position
        )
        return
    facts.references.append(Reference(path, where))


def _expression(text: str, facts: StepFacts, where: str, report: Report) -> None:
    try:
        node = expressions.parse(text)
    except expressions.ExpressionError as error:
        report.error(
            "invalid_expression",
            f"{error.message} in {_excerpt(text)}",
            step_id=facts.id,
            field=where,
            position=error.position,
        )
        return
    facts.references.extend(Reference(path, where) for path in expressions.references(node))
    simpler = expressions.simplify(node)
    if simpler is not None:
        suggestion = expressions.render(simpler)
        report.warn(
            "expression_simplification",
            f"the expression could be simplified to '{suggestion}'",
            step_id=facts.id,
            field=where,
        )


def _excerpt(text: str, most: int = 80) -> str:
    """`text` quoted, cut short when long: a refusal names the problem, not all of the text."""
    return repr(text) if len(text) <= most else f"{text[: most - 20]!r}... ({len(text)} characters)"


def _check_policies(step: Mapping[str, Any], step_id: str, where: str, report: Report) -> None:
    on_error = step.get("on_error", "fail")
    if on_error not in ERROR_POLICIES:
        report.error(
            "invalid_error_policy",
            f"on_error is one of {', '.join(ERROR_POLICIES)}",
            step_id=step_id,
            field=f"{where}.on_error",
        )
    if "timeout" in step and not 0 < (seconds(step["timeout"]) or 0) <= MAX_DURATION_SECONDS:
        report.error(
            "invalid_timeout",
            f"timeout must be a positive duration such as '30s', at most {_longest()}",
            step_id=step_id,
            field=f"{where}.timeout",
        )
    retry = step.get("retry")
    if retry is None:
        return
    for field_name, problem in _retry_problems(retry):
        report.error(
            "invalid_retry_policy",
            problem,
            step_id=step_id,
            field=f"{where}.retry{'.' + field_name if field_name else ''}",
        )


def _longest() -> str:
    return f"'{MAX_DURATION_SECONDS}s' (one day)"


def _retry_problems(retry: object) -> Iterator[tuple[str, str]]:
    if not isinstance(retry, Mapping):
        yield "", "retry must be an object"
        return
    attempts = retry.get("max_attempts", 1)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100:
        yield "max_attempts", "max_attempts is a whole number from 1 to 100"
    intervals = {}
    for name in ("initial_interval", "max_interval"):
        if name in retry:
            interval = intervals[name] = seconds(retry[name])
            if interval is None:
                yield name, f"{name} must be a duration such as '1.5s'"
            elif interval > MAX_DURATION_SECONDS:
                yield name, f"{name} is at most {_longest()}, not {retry[name]}"
    coefficient = retry.get("backoff_coefficient", 2.0)
    if not isinstance(coefficient, int | float) or isinstance(coefficient, bool):
        yield "backoff_coefficient", "backoff_coefficient must be a number"
    elif not 1.0 <= coefficient <= 100.0:
        yield "backoff_coefficient", "backoff_coefficient is between 1 and 100"
    jitter = retry.get("jitter", 0.0)
    if not isinstance(jitter, int | float) or isinstance(jitter, bool) or not 0 <= jitter <= 1:
        yield "jitter", "jitter is a fraction between 0 and 1"
    first, longest = intervals.get("initial_interval"), intervals.get("max_interval")
    if first is not None and longest is not None and longest < first:
        yield "max_interval", "max_interval must not be shorter than initial_interval"
    codes = retry.get("non_retryable_codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
        yield "non_retryable_codes", "non_retryable_codes is a list of error codes"
