"""Bounded work per definition: validation linear in its size and stopping at the plan's limits,
expressions capped before the grammar runs, durations bounded, and the engine's retry clamp.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import expressions
from engine.expressions import ExpressionError, parse, parse_path
from engine.retry import LONGEST_DELAY_SECONDS, RetryPolicy, policy_of
from service.workflows import steps as steps_module
from service.workflows import validation
from service.workflows.issues import Issue
from service.workflows.validation import validate_step, validate_workflow
from tiers import PLANS, Tier
from tiers.plans import MAX_STEPS_CEILING

FREE = PLANS[Tier.FREE]
ENTERPRISE = PLANS[Tier.ENTERPRISE]
TEN_THOUSAND_YEARS = f"{10_000 * 365 * 24 * 3600}s"


def tool(step_id: str, following: str | None, message: str = "hi") -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": step_id,
        "type": "tool",
        "name": step_id,
        "config": {"tool": "log", "arguments": {"message": message}},
    }
    if following:
        step["next"] = following
    return step


def chain(count: int) -> dict[str, Any]:
    """input -> s1 -> ... -> output, `count` steps, each tool reading the step before it."""
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "input", "name": "In", "next": "s1"}]
    steps += [tool(f"s{i}", f"s{i + 1}", f"$.s{i - 1}.message") for i in range(1, count - 1)]
    steps.append({"id": f"s{count - 1}", "type": "output", "name": "Out"})
    return {"name": "chain", "steps": steps}


BLOCKS = ("tool", "condition", "parallel", "loop")


def blocks(kinds: list[str], repeats: int) -> dict[str, Any]:
    """`kinds` repeated `repeats` times as one workflow; every block reads the one before."""
    sequence = kinds * repeats
    steps: list[dict[str, Any]] = [{"id": "b0", "type": "input", "name": "In", "next": "b1"}]
    for number, kind in enumerate(sequence, start=1):
        here, after, before = f"b{number}", f"b{number + 1}", f"$.b{number - 1}"
        if kind == "tool":
            steps.append(tool(here, after, before))
        elif kind == "condition":
            condition = {"condition": f"{before}.x == 1", "next": after}
            config = {"conditions": [condition], "default": after}
            steps.append({"id": here, "type": "condition", "name": here, "config": config})
        elif kind == "parallel":
            branches = [f"{here}_a", f"{here}_b"]
            config = {"branches": branches}
            steps.append({"id": here, "type": "parallel", "name": here, "config": config})
            steps[-1]["next"] = after
            steps += [tool(branch, None, before) for branch in branches]
        else:
            config = {"over": "$.input.items", "body": f"{here}_body"}
            steps.append({"id": here, "type": "loop", "name": here, "config": config})
            steps[-1]["next"] = after
            steps.append(tool(f"{here}_body", None, before))
    steps.append({"id": f"b{len(sequence) + 1}", "type": "output", "name": "Out"})
    return {"name": "blocks", "steps": steps}


@contextmanager
def counting_lines() -> Iterator[Callable[[], int]]:
    """Count the lines the validator's own modules execute: deterministic, unlike a clock."""
    watched = {Path(validation.__file__).resolve(), Path(steps_module.__file__).resolve()}
    names = {str(path) for path in watched}
    lines = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal lines
        if frame.f_code.co_filename not in names:
            return None
        if event == "line":
            lines += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield lambda: lines
    finally:
        sys.settrace(previous)


def lines_to_validate(definition: dict[str, Any]) -> int:
    with counting_lines() as lines:
        validate_workflow(definition, None)
    return lines()


def codes(issues: list[Issue]) -> list[str]:
    return [issue.code for issue in issues]


# --- the plan's limits stop validation at once ---------------------------------------------


def test_more_steps_than_a_free_plan_allows_is_one_violation_and_quick() -> None:
    started = time.monotonic()
    report = validate_workflow(chain(5000), FREE)
    assert time.monotonic() - started < 2.0
    assert codes(report.errors) == ["tier_restriction"]
    assert report.errors[0].field == "steps"
    assert "5000 steps exceed the plan's 10 steps" in report.errors[0].message
    assert report.warnings == []


def test_an_unlimited_plan_still_stops_at_the_step_ceiling() -> None:
    started = time.monotonic()
    report = validate_workflow(chain(10_000), ENTERPRISE)
    assert time.monotonic() - started < 2.0
    assert codes(report.errors) == ["tier_restriction"]
    assert f"the plan's {MAX_STEPS_CEILING} steps" in report.errors[0].message
    assert codes(validate_workflow(chain(MAX_STEPS_CEILING + 1), None).errors) == [
        "tier_restriction"
    ]


def test_a_contract_cannot_raise_the_step_limit_above_the_ceiling() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_STEPS_CEILING}"):
        ENTERPRISE.with_overrides({"max_steps_per_workflow": MAX_STEPS_CEILING + 1})
    assert ENTERPRISE.with_overrides({"max_steps_per_workflow": 500}).steps_allowed == 500


def test_a_definition_over_the_plans_bytes_is_one_violation() -> None:
    definition = {**chain(5), "description": "x" * FREE.max_definition_bytes}
    report = validate_workflow(definition, FREE)
    assert codes(report.errors) == ["tier_restriction"]
    assert report.errors[0].field == "workflow"
    assert f"the plan allows {FREE.max_definition_bytes}" in report.errors[0].message
    assert validate_workflow(definition, ENTERPRISE).valid


def test_a_step_over_the_plans_bytes_is_one_violation() -> None:
    big = tool("big", None, "x" * FREE.max_definition_bytes)
    report = validate_step(big, [], None, FREE)
    assert codes(report.errors) == ["tier_restriction"]
    assert report.errors[0].field == "step"


# --- linear work -----------------------------------------------------------------------------


def test_a_2000_step_chain_validates_well_within_a_second() -> None:
    definition = chain(MAX_STEPS_CEILING)
    started = time.monotonic()
    report = validate_workflow(definition, None)
    assert time.monotonic() - started < 1.5
    assert report.valid, report.errors[:3]


@settings(max_examples=12, deadline=None)
@given(kinds=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4))
def test_validation_work_grows_linearly_with_the_definition(kinds: list[str]) -> None:
    """Doubling the blocks at most doubles the lines run (plus the fixed part); a walk per step
    (the old `_reachable` in `_check_references`) made it four times."""
    small, large = lines_to_validate(blocks(kinds, 40)), lines_to_validate(blocks(kinds, 80))
    fixed = lines_to_validate(blocks(kinds, 1))
    assert large - fixed <= 2.1 * (small - fixed)


def test_one_long_cycle_is_reported_once_in_definition_order() -> None:
    definition = chain(1500)
    definition["steps"][-2]["next"] = "s1"  # s1498 leads back to s1
    report = validate_workflow(definition, None)
    cycles = [issue for issue in report.errors if issue.code == "invalid_cycle"]
    assert len(cycles) == 1 and cycles[0].step_id == "s1"
    assert cycles[0].message.startswith("steps s1 -> s2 -> s3 ")


# --- expressions -----------------------------------------------------------------------------


def test_a_200000_item_list_is_refused_before_parsing_with_a_position() -> None:
    text = "$.input.tier in [" + ", ".join(["1"] * 200_000) + "]"
    started = time.monotonic()
    with pytest.raises(ExpressionError) as refused:
        parse(text)
    assert time.monotonic() - started < 0.1
    assert refused.value.position == expressions.MAX_LENGTH
    assert f"longer than {expressions.MAX_LENGTH} characters" in refused.value.message


def test_a_long_condition_is_an_invalid_expression_issue_with_its_position() -> None:
    definition = blocks(["condition"], 1)
    config = definition["steps"][1]["config"]
    config["conditions"][0]["condition"] = "$.b0.x in [" + ",".join(["1"] * 200_000) + "]"
    started = time.monotonic()
    report = validate_workflow(definition, None)
    assert time.monotonic() - started < 0.5
    assert codes(report.errors) == ["invalid_expression"]
    issue = report.errors[0]
    assert issue.position == expressions.MAX_LENGTH
    assert issue.field == "steps[1].config.conditions[0].condition"
    assert len(issue.message) < 500  # names the problem, not the whole text


def test_a_list_over_the_item_cap_is_refused_at_the_first_item_too_many() -> None:
    items = [str(n) for n in range(expressions.MAX_LIST_ITEMS + 1)]
    text = "$.x in [" + ",".join(items) + "]"
    with pytest.raises(ExpressionError, match="at most 1000 items") as refused:
        parse(text)
    assert refused.value.position == text.index(",1000]") + 1
    assert parse("$.x in [" + ",".join(items[:-1]) + "]")


def test_nesting_and_path_length_are_capped_with_positions() -> None:
    with pytest.raises(ExpressionError, match="levels of nesting") as nested:
        parse("(" * (expressions.MAX_DEPTH + 1) + "true" + ")" * (expressions.MAX_DEPTH + 1))
    assert nested.value.position == expressions.MAX_DEPTH
    assert parse(
        '"((((((((((((((((((((((((((((((((((((" == $.x'
    )  # brackets in strings do not count
    with pytest.raises(ExpressionError, match="levels of nesting"):
        parse("!" * (expressions.MAX_DEPTH + 2) + "true")
    long_path = "$" + ".a" * (expressions.MAX_PATH_SEGMENTS + 1)
    with pytest.raises(ExpressionError, match="at most 32 segments") as segments:
        parse_path(long_path)
    assert segments.value.position == 2 * expressions.MAX_PATH_SEGMENTS + 2
    assert parse_path("$" + ".a" * expressions.MAX_PATH_SEGMENTS)


@settings(max_examples=25, deadline=None)
@given(head=st.text(max_size=40), tail=st.text(max_size=40))
def test_any_text_over_the_length_cap_is_refused_at_the_cap(head: str, tail: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        parse(head + "1" * (expressions.MAX_LENGTH + 1) + tail)
    assert refused.value.position == expressions.MAX_LENGTH


# --- durations -------------------------------------------------------------------------------


def test_a_10000_year_retry_interval_is_refused_with_a_readable_violation() -> None:
    step = {
        **tool("call", None),
        "on_error": "retry",
        "retry": {"max_attempts": 3, "initial_interval": TEN_THOUSAND_YEARS},
    }
    report = validate_step(step, [], None, None)
    assert codes(report.errors) == ["invalid_retry_policy"]
    issue = report.errors[0]
    assert issue.field == "step.retry.initial_interval"
    assert issue.message == (
        f"initial_interval is at most '86400s' (one day), not {TEN_THOUSAND_YEARS}"
    )


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"timeout": "86401s"}, "invalid_timeout", "step.timeout"),
        ({"retry": {"max_interval": TEN_THOUSAND_YEARS}}, "invalid_retry_policy", "step.retry"),
        ({"retry": {"max_attempts": 101}}, "invalid_retry_policy", "step.retry.max_attempts"),
        ({"retry": {"backoff_coefficient": 1e300}}, "invalid_retry_policy", "step.retry"),
    ],
)
def test_durations_and_counts_past_their_bounds_are_refused(
    fields: dict[str, Any], code: str, field: str
) -> None:
    report = validate_step({**tool("call", None), **fields}, [], None, None)
    assert codes(report.errors) == [code]
    assert report.errors[0].field.startswith(field)
    assert validate_step({**tool("call", None), "timeout": "86400s"}, [], None, None).valid


def test_a_webhook_wait_is_bounded() -> None:
    step = {"id": "hook", "type": "webhook", "config": {"event": "paid", "timeout_seconds": 1e12}}
    report = validate_step(step, [], None, None)
    assert codes(report.errors) == ["invalid_config"]


# --- the engine's clamp, for rows stored before the bounds ----------------------------------


def test_a_stored_10000_year_interval_waits_at_most_a_day() -> None:
    legacy = {"retry": {"max_attempts": 5, "initial_interval": TEN_THOUSAND_YEARS}}
    policy = policy_of(legacy)
    assert [policy.delay(attempt) for attempt in (1, 2, 4)] == [LONGEST_DELAY_SECONDS] * 3


@given(
    initial=st.floats(allow_nan=True, allow_infinity=True),
    coefficient=st.floats(allow_nan=True, allow_infinity=True),
    longest=st.floats(allow_nan=True, allow_infinity=True),
    jitter=st.floats(allow_nan=True, allow_infinity=True),
    attempt=st.integers(min_value=-5, max_value=10**6),
    attempts=st.integers(min_value=-5, max_value=10**9),
)
def test_any_stored_policy_gives_a_wait_between_zero_and_a_day(
    initial: float, coefficient: float, longest: float, jitter: float, attempt: int, attempts: int
) -> None:
    policy = RetryPolicy(attempts, initial, coefficient, longest, jitter)
    assert 0.0 <= policy.delay(attempt) <= LONGEST_DELAY_SECONDS
    assert not policy.allows_retry(100, "error", True)
