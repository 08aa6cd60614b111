"""The workflow validator on its own: every check's code, step and field, plans, the catalog,
and property-based runs showing it never raises and always says where a problem is.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.steptypes import STEP_TYPES
from engine.tools import installed
from service.workflows import documents
from service.workflows.issues import ERROR_CODES, WARNING_CODES, Issue, Report
from service.workflows.templates import catalog
from service.workflows.validation import validate_step, validate_workflow
from tiers import PLANS, PlanLimits, Tier

FREE = PLANS[Tier.FREE]
PROFESSIONAL = PLANS[Tier.PROFESSIONAL]
ENTERPRISE = PLANS[Tier.ENTERPRISE]
TIER_ORDER = (Tier.FREE, Tier.PROFESSIONAL, Tier.ENTERPRISE)


# --- building definitions -------------------------------------------------------------------


def step(
    step_id: str, step_type: str, next_step: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A stored-form step; `config` defaults to {} and `next` is left out when None."""
    built: dict[str, Any] = {
        "id": step_id,
        "type": step_type,
        "name": step_id.replace("_", " ").title(),
        "config": fields.pop("config", {}),
    }
    if next_step is not None:
        built["next"] = next_step
    built.update(fields)
    return built


def log(step_id: str, next_step: str | None = None, **fields: Any) -> dict[str, Any]:
    config = {"tool": "log", "arguments": {"message": f"at {step_id}"}}
    return step(step_id, "tool", next_step, config=config, **fields)


def condition(
    step_id: str, branches: list[tuple[str, str]], default: str | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "conditions": [{"condition": text, "next": target} for text, target in branches]
    }
    if default is not None:
        config["default"] = default
    return step(step_id, "condition", config=config)


def workflow(*steps: dict[str, Any], input_schema: object = None) -> dict[str, Any]:
    return {
        "name": "Test workflow",
        "description": "built by a test",
        "input_schema": {} if input_schema is None else input_schema,
        "steps": list(steps),
    }


def linear(**work_fields: Any) -> dict[str, Any]:
    """input -> work (a log tool step, with `work_fields` added) -> out."""
    return workflow(
        step("input", "input", "work"), log("work", "out", **work_fields), step("out", "output")
    )


def error_codes(report: Report) -> list[str]:
    return [issue.code for issue in report.errors]


def warning_codes(report: Report) -> list[str]:
    return [issue.code for issue in report.warnings]


def only_error(report: Report, code: str) -> Issue:
    """The report's one error, which must have `code`."""
    assert error_codes(report) == [code], report.errors
    return report.errors[0]


def one_with(report: Report, code: str) -> Issue:
    """The report's one error with `code`, whatever else it holds."""
    found = [issue for issue in report.errors if issue.code == code]
    assert len(found) == 1, report.errors
    return found[0]


def clean(report: Report) -> None:
    assert report.valid, report.errors
    assert report.errors == [] and report.warnings == [], report


def clean_but_adapters(report: Report) -> None:
    """Valid, warned only that its adapters are not installed in this process."""
    assert report.valid, report.errors
    assert {w.code for w in report.warnings} == {"unknown_adapter"}, report.warnings


# --- the seed's ValidateStep request --------------------------------------------------------

SEED_STEP = {
    "id": "decision",
    "type": "condition",
    "name": "Check Enrichment Success",
    "config": {
        "conditions": [{"condition": "$.enrich_data.success == true", "next": "output_success"}],
        "default": "output_failure",
    },
}
SEED_AVAILABLE = ["input", "lookup", "enrich_data", "output_success", "output_failure"]


def test_seed_validate_step_request_is_valid_with_one_simplification_warning() -> None:
    report = validate_step(SEED_STEP, SEED_AVAILABLE, {}, FREE)

    assert report.valid
    assert report.errors == []
    assert len(report.warnings) == 1
    warning = report.warnings[0]
    assert warning.code == "expression_simplification"
    assert "'$.enrich_data.success'" in warning.message
    assert warning.step_id == "decision"
    assert warning.field == "step.config.conditions[0].condition"


def test_seed_step_with_a_target_missing_from_available_steps_is_refused() -> None:
    available = [name for name in SEED_AVAILABLE if name != "output_failure"]

    issue = only_error(validate_step(SEED_STEP, available, {}, FREE), "unknown_step_reference")

    assert (issue.step_id, issue.field) == ("decision", "step.config.default")


def test_validate_step_reports_paths_naming_no_available_step() -> None:
    draft = condition("decision", [("$.input.ok && $.ghost.ok", "done")], "done")

    issue = only_error(validate_step(draft, ["input", "done"], {}, None), "unknown_path_reference")

    assert issue.step_id == "decision"
    assert issue.field == "step.config.conditions[0].condition"
    assert issue.position == len("$.input.ok && ")


def test_validate_step_checks_the_context_input_schema() -> None:
    report = validate_step(log("work"), [], {"type": 12}, None)

    issue = only_error(report, "invalid_input_schema")
    assert issue.field == "context.input_schema.type"


def test_catalog_customer_enrichment_has_only_the_seed_warning() -> None:
    template = catalog()["customer-enrichment"]
    definition = documents.definition_of(documents.parse_document(template.workflow))

    report = validate_workflow(definition, FREE)

    assert report.errors == []
    assert [(w.code, w.step_id, w.field) for w in report.warnings] == [
        ("expression_simplification", "decision", "steps[3].config.conditions[0].condition")
    ]


# --- each check -----------------------------------------------------------------------------


def test_minimal_linear_workflow_is_clean_on_every_plan() -> None:
    for limits in (None, FREE, PROFESSIONAL, ENTERPRISE):
        clean(validate_workflow(linear(), limits))


def test_duplicate_step_id() -> None:
    definition = linear()
    definition["steps"].append(log("work"))

    issue = only_error(validate_workflow(definition, FREE), "duplicate_step_id")

    assert (issue.step_id, issue.field) == ("work", "steps[3].id")


def test_missing_entry_step() -> None:
    definition = workflow(log("work", "out"), step("out", "output"))

    issue = only_error(validate_workflow(definition, FREE), "missing_entry_step")

    assert issue.field == "steps"


def test_multiple_entry_steps() -> None:
    definition = linear()
    definition["steps"].insert(2, step("second_input", "input", "out"))

    report = validate_workflow(definition, FREE)

    issue = only_error(report, "multiple_entry_steps")
    assert (issue.step_id, issue.field) == ("second_input", "steps")
    assert [(w.code, w.step_id) for w in report.warnings] == [("unreachable_step", "second_input")]


@pytest.mark.parametrize(
    ("broken", "step_id", "field"),
    [
        (log("work", "nowhere"), "work", "steps[1].next"),
        (
            condition("work", [("$.input.ok", "out"), ("$.input.other", "nowhere")], "out"),
            "work",
            "steps[1].config.conditions[1].next",
        ),
        (condition("work", [("$.input.ok", "out")], "nowhere"), "work", "steps[1].config.default"),
        (
            step("work", "parallel", "out", config={"branches": ["out", "nowhere"]}),
            "work",
            "steps[1].config.branches[1]",
        ),
        (
            step("work", "loop", "out", config={"over": "$.input.items", "body": "nowhere"}),
            "work",
            "steps[1].config.body",
        ),
    ],
    ids=["next", "branch", "default", "parallel-branch", "loop-body"],
)
def test_unknown_step_reference(broken: dict[str, Any], step_id: str, field: str) -> None:
    definition = workflow(step("input", "input", "work"), broken, step("out", "output"))

    issue = one_with(validate_workflow(definition, None), "unknown_step_reference")

    assert (issue.step_id, issue.field) == (step_id, field)
    assert "'nowhere'" in issue.message


def test_unknown_condition_branch_at_a_later_index() -> None:
    definition = workflow(
        step("input", "input", "work"),
        log("work", "decision"),
        condition("decision", [("$.work.ok", "missing")], "out"),
        step("out", "output"),
    )

    issue = only_error(validate_workflow(definition, FREE), "unknown_step_reference")

    assert (issue.step_id, issue.field) == ("decision", "steps[2].config.conditions[0].next")


def test_unreachable_step_is_a_warning() -> None:
    definition = linear()
    definition["steps"].append(log("orphan", "out"))

    report = validate_workflow(definition, FREE)

    assert report.valid
    assert [(w.code, w.step_id) for w in report.warnings] == [("unreachable_step", "orphan")]


def _cycle(head: dict[str, Any]) -> dict[str, Any]:
    """input -> each -> body_a -> body_b -> each, with `each` leading on to out."""
    return workflow(
        step("input", "input", "each"),
        head,
        log("body_a", "body_b"),
        log("body_b", "each"),
        step("out", "output"),
    )


def test_cycle_without_a_loop_step_is_refused() -> None:
    head = condition("each", [("$.input.more", "body_a")], "out")

    issue = only_error(validate_workflow(_cycle(head), None), "invalid_cycle")

    assert issue.step_id == "each"
    assert "each -> body_a -> body_b" in issue.message


def test_the_same_cycle_through_a_loop_step_is_accepted() -> None:
    head = step("each", "loop", "out", config={"over": "$.input.items", "body": "body_a"})

    clean(validate_workflow(_cycle(head), PROFESSIONAL))


def test_self_cycle_is_refused() -> None:
    definition = workflow(
        step("input", "input", "spin"),
        condition("spin", [("$.input.again", "spin")], "out"),
        step("out", "output"),
    )

    issue = only_error(validate_workflow(definition, FREE), "invalid_cycle")

    assert issue.step_id == "spin"


def test_condition_without_default() -> None:
    definition = workflow(
        step("input", "input", "decision"),
        condition("decision", [("$.input.ok", "out")]),
        step("out", "output"),
    )

    issue = only_error(validate_workflow(definition, FREE), "missing_default")

    assert (issue.step_id, issue.field) == ("decision", "steps[1].config.default")


def test_condition_with_next_is_refused() -> None:
    decision = condition("decision", [("$.input.ok", "out")], "out")
    decision["next"] = "out"
    definition = workflow(step("input", "input", "decision"), decision, step("out", "output"))

    issue = only_error(validate_workflow(definition, FREE), "invalid_next")

    assert (issue.step_id, issue.field) == ("decision", "steps[1].next")


def test_no_reachable_output() -> None:
    definition = workflow(step("input", "input", "work"), log("work"), step("out", "output"))

    report = validate_workflow(definition, FREE)

    issue = only_error(report, "no_reachable_output")
    assert issue.field == "steps"
    assert [(w.code, w.step_id) for w in report.warnings] == [("unreachable_step", "out")]


def test_path_to_a_step_that_runs_later_is_a_warning() -> None:
    definition = workflow(
        step("input", "input", "early"),
        step(
            "early",
            "tool",
            "late",
            config={"tool": "log", "arguments": {"message": "$.late.message"}},
        ),
        log("late", "out"),
        step("out", "output"),
    )

    report = validate_workflow(definition, FREE)

    assert report.valid
    assert len(report.warnings) == 1
    warning = report.warnings[0]
    assert warning.code == "reference_not_before"
    assert (warning.step_id, warning.field) == ("early", "steps[1].config.arguments.message")
    assert warning.position == 0


def test_path_to_a_step_on_another_branch_is_a_warning() -> None:
    definition = workflow(
        step("input", "input", "decision"),
        condition("decision", [("$.input.ok", "left")], "right"),
        log("left", "out"),
        step("right", "output", config={"values": {"seen": "$.left.message"}}),
        step("out", "output"),
    )

    report = validate_workflow(definition, FREE)

    assert report.valid
    assert [(w.code, w.step_id, w.field) for w in report.warnings] == [
        ("reference_not_before", "right", "steps[3].config.values.seen")
    ]


def test_path_to_an_earlier_step_and_to_input_is_fine() -> None:
    definition = workflow(
        step("input", "input", "work"),
        log("work", "out"),
        step("out", "output", config={"values": {"a": "$.work.message", "b": ["$.input.y", 3]}}),
    )

    clean(validate_workflow(definition, FREE))


def test_path_to_a_nonexistent_step() -> None:
    definition = workflow(
        step("input", "input", "work"),
        log("work", "out"),
        step("out", "output", config={"values": {"result": {"x": "$.ghost.value"}}}),
    )

    issue = only_error(validate_workflow(definition, FREE), "unknown_path_reference")

    assert (issue.step_id, issue.field) == ("out", "steps[2].config.values.result.x")
    assert issue.position == 0
    assert "$.ghost.value" in issue.message


def test_path_to_a_nonexistent_step_inside_an_expression_has_its_position() -> None:
    definition = workflow(
        step("input", "input", "decision"),
        condition("decision", [("$.input.ok && $.ghost.ok", "out")], "out"),
        step("out", "output"),
    )

    issue = only_error(validate_workflow(definition, FREE), "unknown_path_reference")

    assert issue.field == "steps[1].config.conditions[0].condition"
    assert issue.position == len("$.input.ok && ")


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("$.input.a &&", 12),
        ("$.input.a === 1", 12),
        ("$.input.a == 'x", 13),
        ("$[1.5] == 1", 2),
        ("$.input.a @ 2", 10),
    ],
)
def test_invalid_expression_has_a_position(text: str, position: int) -> None:
    definition = workflow(
        step("input", "input", "decision"),
        condition("decision", [("$.input.ok", "out"), (text, "out")], "out"),
        step("out", "output"),
    )

    issue = only_error(validate_workflow(definition, FREE), "invalid_expression")

    assert (issue.step_id, issue.field) == ("decision", "steps[1].config.conditions[1].condition")
    assert isinstance(issue.position, int)
    assert issue.position == position


def test_invalid_path_in_a_loop() -> None:
    definition = _cycle(step("each", "loop", "out", config={"over": "$.", "body": "body_a"}))

    issue = only_error(validate_workflow(definition, None), "invalid_path")

    assert (issue.step_id, issue.field) == ("each", "steps[1].config.over")
    assert isinstance(issue.position, int)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"tool": "teleport"}, "steps[1].config.tool"),
        ({"tool": "log", "extra": 1}, "steps[1].config"),
        ({"arguments": {}}, "steps[1].config"),
        ({"tool": "log", "arguments": []}, "steps[1].config.arguments"),
        ("not an object", "steps[1].config"),
    ],
)
def test_invalid_tool_config(config: object, field: str) -> None:
    definition = workflow(
        step("input", "input", "work"),
        step("work", "tool", "out", config=config),
        step("out", "output"),
    )

    issue = only_error(validate_workflow(definition, FREE), "invalid_config")

    assert (issue.step_id, issue.field) == ("work", field)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"conditions": []}, ".conditions"),
        ({"conditions": [{"condition": "$.input.ok"}], "default": "out"}, ".conditions[0]"),
        (
            {"conditions": [{"condition": "", "next": "out"}], "default": "out"},
            ".conditions[0].condition",
        ),
        (
            {"conditions": [{"condition": "$.input.ok", "next": "9out"}], "default": "out"},
            ".conditions[0].next",
        ),
        ({"conditions": [{"condition": "$.input.ok", "next": "out"}], "default": 3}, ".default"),
    ],
)
def test_invalid_condition_config(config: dict[str, Any], field: str) -> None:
    definition = workflow(
        step("input", "input", "decision"),
        step("decision", "condition", config=config),
        step("out", "output"),
    )

    report = validate_workflow(definition, FREE)

    assert "invalid_config" in error_codes(report)
    assert ("decision", "steps[1].config" + field) in [(e.step_id, e.field) for e in report.errors]


@pytest.mark.parametrize(
    ("step_type", "config", "field"),
    [
        ("loop", {"over": "items", "body": "out"}, ".over"),
        ("loop", {"over": "$.input.items", "body": "out", "max_iterations": 0}, ".max_iterations"),
        ("parallel", {"branches": ["out"]}, ".branches"),
        ("parallel", {"branches": ["out", "out"]}, ".branches"),
        ("aggregate", {"sources": ["$.input.a", "nope"]}, ".sources[1]"),
        ("wait", {"seconds": 5, "until": "$.input.when"}, ""),
        ("wait", {"seconds": 0}, ".seconds"),
        ("webhook", {"event": ""}, ".event"),
        ("custom", {"adapter": "Acme CRM"}, ".adapter"),
        ("input", {"anything": 1}, ""),
        ("output", {"values": "all"}, ".values"),
    ],
)
def test_invalid_config_names_the_field_inside_config(
    step_type: str, config: dict[str, Any], field: str
) -> None:
    definition = workflow(
        step("input", "input", "broken"),
        step("broken", step_type, "out", config=config),
        step("out", "output"),
    )

    report = validate_workflow(definition, None)

    assert [(e.code, e.step_id, e.field) for e in report.errors if e.code == "invalid_config"] == [
        ("invalid_config", "broken", "steps[1].config" + field)
    ]


@pytest.mark.parametrize(
    ("arguments", "fields"),
    [
        ({"url": "", "method": "FETCH"}, [".arguments.method", ".arguments.url"]),
        ({"url": "https://x.example", "timeout_seconds": 0}, [".arguments.timeout_seconds"]),
        ({"url": "https://x.example", "headers": {"X-Count": 3}}, [".arguments.headers.X-Count"]),
        ({"method": "GET"}, [".arguments"]),
        ({"url": "https://x.example", "verb": "GET"}, [".arguments"]),
    ],
)
def test_bad_tool_arguments(arguments: dict[str, Any], fields: list[str]) -> None:
    config = {"tool": "http_request", "arguments": arguments}
    definition = workflow(
        step("input", "input", "call"),
        step("call", "tool", "out", config=config),
        step("out", "output"),
    )

    report = validate_workflow(definition, FREE)

    assert set(error_codes(report)) == {"invalid_config"}
    assert sorted(e.field for e in report.errors) == ["steps[1].config" + f for f in fields]
    assert all(e.step_id == "call" for e in report.errors)
    assert all(e.message.startswith("http_request: ") for e in report.errors)


def test_missing_log_message_and_transform_values() -> None:
    definition = workflow(
        step("input", "input", "say"),
        step("say", "tool", "shape", config={"tool": "log", "arguments": {"level": "loud"}}),
        step("shape", "tool", "out", config={"tool": "transform"}),
        step("out", "output"),
    )

    report = validate_workflow(definition, FREE)

    assert sorted((e.code, e.step_id, e.field) for e in report.errors) == [
        ("invalid_config", "say", "steps[1].config.arguments"),
        ("invalid_config", "say", "steps[1].config.arguments.level"),
        ("invalid_config", "shape", "steps[2].config.arguments"),
    ]


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        ({"backoff_coefficient": 0.5}, "steps[1].retry.backoff_coefficient"),
        ({"backoff_coefficient": "2"}, "steps[1].retry.backoff_coefficient"),
        ({"jitter": 2}, "steps[1].retry.jitter"),
        ({"jitter": -0.1}, "steps[1].retry.jitter"),
        ({"initial_interval": "5s", "max_interval": "1s"}, "steps[1].retry.max_interval"),
        ({"initial_interval": "soon"}, "steps[1].retry.initial_interval"),
        ({"max_interval": 10}, "steps[1].retry.max_interval"),
        ({"max_attempts": 0}, "steps[1].retry.max_attempts"),
        ({"max_attempts": 101}, "steps[1].retry.max_attempts"),
        ({"max_attempts": 2.0}, "steps[1].retry.max_attempts"),
        ({"max_attempts": True}, "steps[1].retry.max_attempts"),
        ({"non_retryable_codes": [""]}, "steps[1].retry.non_retryable_codes"),
        ({"non_retryable_codes": "invalid_input"}, "steps[1].retry.non_retryable_codes"),
        ("three times", "steps[1].retry"),
    ],
)
def test_invalid_retry_policy(retry: object, field: str) -> None:
    issue = only_error(validate_workflow(linear(retry=retry), FREE), "invalid_retry_policy")

    assert (issue.step_id, issue.field) == ("work", field)


def test_valid_retry_policy() -> None:
    retry = {
        "max_attempts": 3,
        "initial_interval": "1s",
        "max_interval": "10.5s",
        "backoff_coefficient": 1,
        "jitter": 0.5,
        "non_retryable_codes": ["invalid_input"],
    }

    clean(validate_workflow(linear(retry=retry), FREE))


def test_every_retry_problem_is_reported() -> None:
    retry = {"max_attempts": 0, "backoff_coefficient": 0.5, "jitter": 2}

    report = validate_workflow(linear(retry=retry), FREE)

    assert [e.field for e in report.errors] == [
        "steps[1].retry.max_attempts",
        "steps[1].retry.backoff_coefficient",
        "steps[1].retry.jitter",
    ]


@pytest.mark.parametrize("on_error", ["ignore", "FAIL", "ERROR_POLICY_RETRY", 1, None])
def test_invalid_error_policy(on_error: object) -> None:
    issue = only_error(validate_workflow(linear(on_error=on_error), FREE), "invalid_error_policy")

    assert (issue.step_id, issue.field) == ("work", "steps[1].on_error")


@pytest.mark.parametrize("on_error", ["fail", "retry", "continue"])
def test_valid_error_policy(on_error: str) -> None:
    clean(validate_workflow(linear(on_error=on_error), FREE))


@pytest.mark.parametrize("timeout", ["0s", "0.0s", "-1s", "30", "30m", "", 30, None])
def test_invalid_timeout(timeout: object) -> None:
    issue = only_error(validate_workflow(linear(timeout=timeout), FREE), "invalid_timeout")

    assert (issue.step_id, issue.field) == ("work", "steps[1].timeout")


@pytest.mark.parametrize("timeout", ["30s", "0.5s", "86400s"])
def test_valid_timeout(timeout: str) -> None:
    clean(validate_workflow(linear(timeout=timeout), FREE))


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"type": 12}, "input_schema.type"),
        ({"type": "strin"}, "input_schema.type"),
        ({"properties": {"a": {"minLength": -1}}}, "input_schema.properties.a.minLength"),
        ({"required": "customer"}, "input_schema.required"),
        ({"pattern": "("}, "input_schema.pattern"),
        ("object", "input_schema"),
        ([{"type": "object"}], "input_schema"),
    ],
)
def test_invalid_input_schema(schema: object, field: str) -> None:
    definition = linear()
    definition["input_schema"] = schema

    issue = only_error(validate_workflow(definition, FREE), "invalid_input_schema")

    assert issue.field == field


def test_valid_input_schema() -> None:
    schema = {
        "type": "object",
        "required": ["customer"],
        "properties": {"customer": {"type": "object", "properties": {"email": {"type": "string"}}}},
    }
    definition = linear()
    definition["input_schema"] = schema

    clean(validate_workflow(definition, FREE))


def test_unknown_step_type() -> None:
    definition = workflow(
        step("input", "input", "work"), step("work", "teleport", "out"), step("out", "output")
    )

    issue = only_error(validate_workflow(definition, FREE), "unknown_step_type")

    assert (issue.step_id, issue.field) == ("work", "steps[1].type")


@pytest.mark.parametrize("step_id", ["", "9lives", "has space", "x" * 64, 7, None])
def test_invalid_step_id(step_id: object) -> None:
    definition = linear()
    definition["steps"].append({"id": step_id, "type": "output"})

    report = validate_workflow(definition, FREE)

    issue = next(e for e in report.errors if e.code == "invalid_step_id")
    assert issue.field == "steps[3].id"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, None, 5])
def test_invalid_name(name: object) -> None:
    definition = linear()
    definition["name"] = name

    issue = only_error(validate_workflow(definition, FREE), "invalid_field")

    assert issue.field == "name"


@pytest.mark.parametrize("steps", [[], None, "input", {"id": "input"}])
def test_missing_steps(steps: object) -> None:
    definition = linear()
    definition["steps"] = steps

    issue = only_error(validate_workflow(definition, FREE), "missing_steps")

    assert issue.field == "steps"


def test_a_step_that_is_not_an_object() -> None:
    definition = linear()
    definition["steps"].append("out")

    issue = only_error(validate_workflow(definition, FREE), "invalid_step")

    assert issue.field == "steps[3]"


# --- plans ----------------------------------------------------------------------------------

ADVANCED_STEPS: dict[str, dict[str, Any]] = {
    "loop": _cycle(step("each", "loop", "out", config={"over": "$.input.items", "body": "body_a"})),
    "parallel": workflow(
        step("input", "input", "each"),
        step("each", "parallel", "out", config={"branches": ["body_a", "body_b"], "join": "all"}),
        log("body_a"),
        log("body_b"),
        step("out", "output"),
    ),
    "wait": workflow(
        step("input", "input", "each"),
        step("each", "wait", "out", config={"until": "$.input.when"}),
        step("out", "output"),
    ),
    "webhook": workflow(
        step("input", "input", "each"),
        step("each", "webhook", "out", config={"event": "signed", "timeout_seconds": 60}),
        step("out", "output"),
    ),
    "aggregate": workflow(
        step("input", "input", "each"),
        step("each", "aggregate", "out", config={"sources": ["$.input.a", "$.input.b"]}),
        step("out", "output"),
    ),
}
CUSTOM = workflow(
    step("input", "input", "each"),
    step(
        "each", "custom", "out", config={"adapter": "acme.crm", "arguments": {"id": "$.input.id"}}
    ),
    step("out", "output"),
)


@pytest.mark.parametrize("step_type", sorted(ADVANCED_STEPS))
def test_advanced_step_types_need_professional(step_type: str) -> None:
    definition = ADVANCED_STEPS[step_type]

    issue = only_error(validate_workflow(definition, FREE), "tier_restriction")

    assert (issue.step_id, issue.field) == ("each", "steps[1].type")
    assert "professional" in issue.message
    clean(validate_workflow(definition, PROFESSIONAL))
    clean(validate_workflow(definition, ENTERPRISE))


def test_custom_step_type_needs_enterprise() -> None:
    for limits in (FREE, PROFESSIONAL):
        issue = only_error(validate_workflow(CUSTOM, limits), "tier_restriction")
        assert (issue.step_id, issue.field) == ("each", "steps[1].type")
        assert "enterprise" in issue.message
    report = validate_workflow(CUSTOM, ENTERPRISE)
    # Valid; its adapter is not installed in this process (an operator installs adapters).
    assert report.valid, report.errors
    assert [(w.code, w.field) for w in report.warnings] == [
        ("unknown_adapter", "steps[1].config.adapter")
    ]


def test_validate_step_applies_the_plan_too() -> None:
    draft = step("each", "webhook", "out", config={"event": "signed"})

    issue = only_error(validate_step(draft, ["out"], {}, FREE), "tier_restriction")

    assert (issue.step_id, issue.field) == ("each", "step.type")
    clean(validate_step(draft, ["out"], {}, PROFESSIONAL))


def _long(step_count: int) -> dict[str, Any]:
    """input -> work_1 -> ... -> out, `step_count` steps in all."""
    tools = [log(f"work_{n}", f"work_{n + 1}") for n in range(1, step_count - 1)]
    tools[-1]["next"] = "out"
    return workflow(step("input", "input", "work_1"), *tools, step("out", "output"))


def test_step_count_limit() -> None:
    clean(validate_workflow(_long(10), FREE))

    issue = only_error(validate_workflow(_long(11), FREE), "tier_restriction")

    assert issue.field == "steps"
    assert "11 steps" in issue.message
    clean(validate_workflow(_long(11), PROFESSIONAL))
    clean(validate_workflow(_long(30), PROFESSIONAL))
    assert only_error(validate_workflow(_long(31), PROFESSIONAL), "tier_restriction").field == (
        "steps"
    )
    clean(validate_workflow(_long(31), ENTERPRISE))


def test_without_limits_nothing_tier_related_is_reported() -> None:
    definition = _long(40)
    definition["steps"][1] = step(
        "work_1", "custom", "work_2", config={"adapter": "acme.crm", "arguments": {}}
    )
    definition["steps"][2] = step("work_2", "wait", "work_3", config={"seconds": 1})

    clean_but_adapters(validate_workflow(definition, None))
    clean(validate_workflow(ADVANCED_STEPS["loop"], None))
    clean_but_adapters(validate_workflow(CUSTOM, None))
    assert "tier_restriction" in error_codes(validate_workflow(definition, FREE))


# --- the catalog ----------------------------------------------------------------------------

TEMPLATES = sorted(catalog())


def _template_definition(template_id: str) -> dict[str, Any]:
    template = catalog()[template_id]
    return documents.definition_of(documents.parse_document(copy.deepcopy(template.workflow)))


@pytest.mark.parametrize("template_id", TEMPLATES)
def test_catalog_template_is_valid_on_its_plan_and_above(template_id: str) -> None:
    tier = catalog()[template_id].tier
    definition = _template_definition(template_id)

    for plan in TIER_ORDER[TIER_ORDER.index(tier) :]:
        report = validate_workflow(definition, PLANS[plan])
        assert report.errors == [], (plan, report.errors)


def test_free_catalog_templates_are_valid_on_free() -> None:
    free = [t for t in TEMPLATES if catalog()[t].tier is Tier.FREE]

    assert free, "the catalog has free templates"
    for template_id in free:
        report = validate_workflow(_template_definition(template_id), FREE)
        assert report.errors == [], (template_id, report.errors)


# --- properties -----------------------------------------------------------------------------

KEYS = ["name", "steps", "input_schema", "id", "type", "config", "next", "retry", "on_error"]
KEYS += ["timeout", "conditions", "condition", "default", "tool", "arguments", "values", "over"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["input", "output", "condition", "$.input.x", "$", "30s", "loop"]),
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)
LIMITS: st.SearchStrategy[PlanLimits | None] = st.sampled_from(
    [None, FREE, PROFESSIONAL, ENTERPRISE]
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_well_formed(report: Report) -> None:
    for issue in report.errors:
        assert issue.code in ERROR_CODES, issue
    for issue in report.warnings:
        assert issue.code in WARNING_CODES, issue
    for issue in [*report.errors, *report.warnings]:
        assert issue.step_id or issue.field, issue
        assert issue.position is None or (isinstance(issue.position, int) and issue.position >= 0)
    assert report.valid == (not report.errors)


@PROPERTY
@given(definition=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), JSON), limits=LIMITS)
def test_validate_workflow_never_raises_on_arbitrary_mappings(
    definition: dict[str, Any], limits: PlanLimits | None
) -> None:
    _assert_well_formed(validate_workflow(definition, limits))


@PROPERTY
@given(steps=JSON, limits=LIMITS)
def test_validate_workflow_never_raises_on_arbitrary_steps(
    steps: object, limits: PlanLimits | None
) -> None:
    _assert_well_formed(validate_workflow({"name": "x", "steps": steps}, limits))


@pytest.mark.parametrize("definition", [None, [], "workflow", 3])
def test_validate_workflow_never_raises_on_non_mappings(definition: Any) -> None:
    _assert_well_formed(validate_workflow(definition, FREE))


IDS = ["input", "a", "b", "c", "d", "e", "out"]
BAD_IDS = ["9bad", "", "has space"]
TARGETS = [*IDS, *BAD_IDS, "nowhere"]
STEP_TYPE_NAMES = [*STEP_TYPES, "teleport"]
EXPRESSIONS = [
    "$.input.flag",
    "$.a.ok == true",
    "!!$.b.x",
    "$.c.n > 3 && exists $.ghost.y",
    "$.input.x in [1, 2, 'three']",
    "not ($.a.v != false)",
    "$.out.z in $.b.list",
    "$",
    "$[0] == null",
    "$.a.x ==",
    "(( $.b",
    "'unterminated",
    "$[1.5]",
    "$.a['bad \\q escape']",
    "1e999 > $.a.n",
    "",
]
PATHS = ["$.input.items", "$.a.list", "$.ghost.x", "$", "$.", "$[0]", '$.b["k"]', "$.c[1.5]", "a"]
RETRIES = [
    {"max_attempts": 3, "initial_interval": "1s", "max_interval": "10s"},
    {"backoff_coefficient": 0.5, "jitter": 2},
    {"initial_interval": "9s", "max_interval": "1s", "non_retryable_codes": [1]},
    "often",
]


@st.composite
def configs(draw: st.DrawFn, step_type: str) -> object:
    target = st.sampled_from(TARGETS)
    path = st.sampled_from(PATHS)
    values = st.dictionaries(st.sampled_from(["k", "v"]), path | SCALARS, max_size=3)
    match step_type:
        case "condition":
            branches = draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"condition": st.sampled_from(EXPRESSIONS), "next": target}
                    ),
                    max_size=3,
                )
            )
            config: dict[str, Any] = {"conditions": branches}
            if draw(st.booleans()):
                config["default"] = draw(target)
            return config
        case "loop":
            config = {"over": draw(path), "body": draw(target)}
            if draw(st.booleans()):
                config["max_iterations"] = draw(st.integers(-1, 20000))
            return config
        case "parallel":
            return {"branches": draw(st.lists(target, max_size=4))}
        case "aggregate":
            return {"sources": draw(st.lists(path, max_size=3))}
        case "wait":
            return draw(
                st.sampled_from([{"seconds": 5}, {"seconds": 0}, {}])
                | st.fixed_dictionaries({"until": path})
            )
        case "webhook":
            return {"event": draw(st.sampled_from(["signed", ""]))}
        case "tool":
            tool = draw(st.sampled_from([*installed().names(), "nope"]))
            arguments = draw(
                st.sampled_from([{"message": "hi"}, {"url": "https://x.example"}, {}])
                | st.fixed_dictionaries({"message": path})
                | st.fixed_dictionaries({"values": values})
            )
            return {"tool": tool, "arguments": arguments}
        case "output":
            return {"values": draw(values)}
        case "custom":
            return {
                "adapter": draw(st.sampled_from(["acme.crm", "Bad"])),
                "arguments": draw(values),
            }
    return draw(st.sampled_from([{}, None, {"x": 1}, []]))


@st.composite
def structured_steps(draw: st.DrawFn) -> dict[str, Any]:
    step_type = draw(st.sampled_from(["tool", "output", "condition", *STEP_TYPE_NAMES]))
    built: dict[str, Any] = {"type": step_type, "config": draw(configs(step_type))}
    match draw(st.integers(0, 19)):
        case 0:
            pass  # no id at all
        case 1:
            built["id"] = draw(st.sampled_from(BAD_IDS))
        case _:
            built["id"] = draw(st.sampled_from(IDS))
    if draw(st.booleans()):
        built["next"] = draw(st.sampled_from(TARGETS))
    if draw(st.integers(0, 3)) == 0:
        built["retry"] = draw(st.sampled_from(RETRIES))
    if draw(st.integers(0, 4)) == 0:
        built["on_error"] = draw(st.sampled_from(["fail", "retry", "continue", "ignore"]))
    if draw(st.integers(0, 4)) == 0:
        built["timeout"] = draw(st.sampled_from(["30s", "0s", "soon"]))
    return built


@st.composite
def structured_definitions(draw: st.DrawFn) -> dict[str, Any]:
    steps = draw(st.lists(structured_steps(), min_size=1, max_size=len(IDS) - 1))
    if draw(st.booleans()):
        # Tidier: distinct ids after a single input step and no policies, so the graph
        # checks (cycles, reachability, references) see more nearly valid workflows.
        ids = draw(st.permutations(IDS[1:]))
        for index, built in enumerate(steps):
            built["id"] = ids[index]
            for key in ("retry", "timeout", "on_error"):
                built.pop(key, None)
            if built["type"] == "input":
                built["type"] = "output"
        steps.insert(0, {"id": "input", "type": "input", "next": steps[0]["id"]})
    elif draw(st.booleans()):
        steps.insert(0, {"id": "input", "type": "input", "next": draw(st.sampled_from(TARGETS))})
    schema = draw(st.sampled_from([{}, {"type": "object"}, {}, None, {"type": 12}]))
    return {"name": "random", "input_schema": schema, "steps": steps}


@PROPERTY
@given(definition=structured_definitions(), limits=LIMITS)
def test_structured_random_definitions_give_well_formed_reports(
    definition: dict[str, Any], limits: PlanLimits | None
) -> None:
    original = copy.deepcopy(definition)

    report = validate_workflow(definition, limits)

    _assert_well_formed(report)
    assert definition == original, "validation must not change the definition"
    assert validate_workflow(definition, limits) == report, "validation is deterministic"


@PROPERTY
@given(
    draft=structured_steps() | JSON,
    available=st.lists(st.sampled_from(TARGETS) | st.text(max_size=6), max_size=6),
    input_schema=JSON,
    limits=LIMITS,
)
def test_validate_step_never_raises_and_names_where(
    draft: object, available: list[str], input_schema: object, limits: PlanLimits | None
) -> None:
    _assert_well_formed(validate_step(draft, available, input_schema, limits))


@pytest.mark.parametrize("shape", ["retry-cycle-inside-loop-body", "loop-next-leads-back"])
def test_cycles_not_repeated_by_a_loop_are_refused_even_next_to_a_loop(shape: str) -> None:
    each = step("each", "loop", "out", config={"over": "$.input.items", "body": "b"})
    if shape == "retry-cycle-inside-loop-body":
        # b -> c -> b repeats b without the loop; the same b/c pair alone is refused.
        tail = [log("b", "c"), condition("c", [("$.b.again", "b")], "each")]
    else:
        # The loop's `next` (not its body) leads back into the loop: each -> after -> each.
        each["next"] = "after"
        tail = [log("b", "each"), condition("after", [("$.input.done", "out")], "each")]
    definition = workflow(step("input", "input", "each"), each, *tail, step("out", "output"))

    assert "invalid_cycle" in error_codes(validate_workflow(definition, None))


def test_step_id_with_a_trailing_newline_is_refused() -> None:
    definition = workflow(step("input", "input", "out\n"), step("out\n", "output"))

    assert "invalid_step_id" in error_codes(validate_workflow(definition, FREE))


def test_steps_after_a_parallel_step_may_read_its_branches() -> None:
    fan = step("fan", "parallel", "out", config={"branches": ["a", "b"]})
    out = step("out", "output", config={"values": {"a": "$.a.message", "b": "$.b"}})
    definition = workflow(step("input", "input", "fan"), fan, log("a", None), log("b", None), out)

    report = validate_workflow(definition, None)
    assert (report.errors, report.warnings) == ([], [])
