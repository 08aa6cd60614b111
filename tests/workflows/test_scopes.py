"""The shape rules of loops and parallels (`service.workflows.scopes`) through the validator:
a body returns to its loop and never runs after it, loops nest at most three deep, branches
have steps of their own and end alone; join and while-loop configs; the plan's loop cap.
The catalog's templates, which use loops, parallels and aggregates, still pass.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from engine.instances import MAX_LOOP_NESTING
from service.workflows.templates import catalog
from service.workflows.validation import validate_workflow
from tests.workflows.test_validation import (
    ENTERPRISE,
    FREE,
    PROFESSIONAL,
    TIER_ORDER,
    _template_definition,
    clean,
    condition,
    error_codes,
    log,
    one_with,
    only_error,
    step,
    workflow,
)
from tiers import PLANS

SCOPE_CODES = frozenset(
    {
        "loop_body_not_closed",
        "loop_body_escapes",
        "loop_nesting_too_deep",
        "branches_overlap",
        "branch_escapes",
        "graph_too_complex",
    }
)


def each(following: str | None = "out", body: str = "b", **config: Any) -> dict[str, Any]:
    """A for-each loop `each` over $.input.items."""
    return step("each", "loop", following, config={"over": "$.input.items", "body": body, **config})


def looping(*body: dict[str, Any], loop: dict[str, Any] | None = None) -> dict[str, Any]:
    """input -> each [body...] -> out."""
    return workflow(step("input", "input", "each"), loop or each(), *body, step("out", "output"))


def fan(branches: list[str], following: str | None = "out", **config: Any) -> dict[str, Any]:
    return step("fan", "parallel", following, config={"branches": branches, **config})


def fanning(*branches: dict[str, Any], parallel: dict[str, Any] | None = None) -> dict[str, Any]:
    """input -> fan [branches...] -> out."""
    ids = [b["id"] for b in branches if b["id"] in ("a", "b", "c")]
    return workflow(
        step("input", "input", "fan"), parallel or fan(ids), *branches, step("out", "output")
    )


def nested_loops(depth: int) -> dict[str, Any]:
    """input -> l1 [l2 [... [x] ...]] -> out: `depth` loops, each the body of the one around it."""
    steps = [step("input", "input", "l1")]
    for k in range(1, depth + 1):
        body = f"l{k + 1}" if k < depth else "x"
        following = "out" if k == 1 else f"l{k - 1}"
        steps.append(
            step(f"l{k}", "loop", following, config={"over": "$.input.items", "body": body})
        )
    steps += [log("x", f"l{depth}"), step("out", "output")]
    return workflow(*steps)


# --- shapes that are fine -------------------------------------------------------------------


def test_a_body_chain_that_returns_to_its_loop_is_clean() -> None:
    clean(validate_workflow(looping(log("b", "c"), log("c", "each")), PROFESSIONAL))


def test_a_body_that_branches_and_returns_on_every_path_is_clean() -> None:
    definition = looping(
        condition("b", [("$.each.item.big", "c")], "d"), log("c", "each"), log("d", "each")
    )

    clean(validate_workflow(definition, PROFESSIONAL))


def test_branches_that_are_chains_ending_alone_are_clean() -> None:
    definition = fanning(log("a", "a2"), log("a2"), log("b"), log("c"))

    clean(validate_workflow(definition, PROFESSIONAL))


def test_a_loop_on_a_parallels_branch_is_clean() -> None:
    definition = workflow(
        step("input", "input", "fan"),
        fan(["a", "z"]),
        step("a", "loop", None, config={"over": "$.input.items", "body": "ab"}),
        log("ab", "a"),
        log("z"),
        step("out", "output"),
    )

    clean(validate_workflow(definition, PROFESSIONAL))


def test_a_parallel_in_a_loops_body_is_clean() -> None:
    """Its branches end where their paths end (the loop's rules exempt them) and its `next`
    returns to the loop; reaching the branches again around the loop is the next iteration,
    not a branch running after its parallel."""
    definition = looping(log("b", "fan"), fan(["x", "y"], "each"), log("x"), log("y"))

    clean(validate_workflow(definition, PROFESSIONAL))


def test_loops_nest_three_deep() -> None:
    assert MAX_LOOP_NESTING == 3
    clean(validate_workflow(nested_loops(MAX_LOOP_NESTING), PROFESSIONAL))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_an_n_of_m_join_takes_n_from_one_to_the_branch_count(n: int) -> None:
    definition = fanning(
        log("a"), log("b"), log("c"), parallel=fan(["a", "b", "c"], join="n_of_m", n=n)
    )

    clean(validate_workflow(definition, PROFESSIONAL))


@pytest.mark.parametrize("join", ["all", "any"])
def test_all_and_any_joins_take_no_n(join: str) -> None:
    clean(
        validate_workflow(
            fanning(log("a"), log("b"), parallel=fan(["a", "b"], join=join)), PROFESSIONAL
        )
    )


@pytest.mark.parametrize(
    "condition_text", ["$.count.index < 4", "$.count.last == null || $.count.last.i < 2"]
)
def test_a_while_loop_reads_its_own_index_and_last_result(condition_text: str) -> None:
    loop = step("count", "loop", "out", config={"while": condition_text, "body": "b"})
    definition = workflow(
        step("input", "input", "count"), loop, log("b", "count"), step("out", "output")
    )

    clean(validate_workflow(definition, PROFESSIONAL))


def test_a_while_loop_may_say_concurrency_one() -> None:
    config = {"while": "$.count.index < 4", "body": "b", "concurrency": 1}
    loop = step("count", "loop", "out", config=config)
    definition = workflow(
        step("input", "input", "count"), loop, log("b", "count"), step("out", "output")
    )

    clean(validate_workflow(definition, PROFESSIONAL))


# --- loop_body_not_closed, loop_body_escapes, loop_nesting_too_deep -------------------------


def test_a_body_that_never_returns_to_its_loop() -> None:
    definition = looping(log("b", "c"), log("c"))

    issue = only_error(validate_workflow(definition, PROFESSIONAL), "loop_body_not_closed")

    assert issue.step_id == "each"
    assert "'b'" in issue.message


def test_a_body_path_that_ends_without_returning() -> None:
    """One path of the body comes back, the other (through `d`) just stops."""
    definition = looping(
        condition("b", [("$.each.item.big", "c")], "d"), log("c", "each"), log("d")
    )

    issue = only_error(validate_workflow(definition, PROFESSIONAL), "loop_body_not_closed")

    assert issue.step_id == "d"
    assert "'each'" in issue.message


def test_a_body_step_that_also_runs_after_the_loop() -> None:
    """`c` returns to the loop on one path and goes on to `out`, the loop's next, on the other."""
    definition = looping(log("b", "c"), condition("c", [("$.each.item.again", "each")], "out"))

    issue = only_error(validate_workflow(definition, PROFESSIONAL), "loop_body_escapes")

    assert issue.step_id == "each"
    assert "'out'" in issue.message


def test_loops_nested_four_deep() -> None:
    issue = only_error(
        validate_workflow(nested_loops(MAX_LOOP_NESTING + 1), PROFESSIONAL), "loop_nesting_too_deep"
    )

    assert issue.step_id == "x"
    assert "4 loops" in issue.message


# --- branches_overlap, branch_escapes -------------------------------------------------------


def test_two_branches_sharing_a_step() -> None:
    definition = fanning(log("a", "c"), log("b", "c"), log("c"), parallel=fan(["a", "b"]))

    issue = only_error(validate_workflow(definition, PROFESSIONAL), "branches_overlap")

    assert issue.step_id == "fan"
    assert "'c'" in issue.message


def test_a_branch_that_leads_to_the_step_after_its_parallel() -> None:
    definition = fanning(log("a", "out"), log("b"))

    issue = only_error(validate_workflow(definition, PROFESSIONAL), "branch_escapes")

    assert issue.step_id == "fan"
    assert "'a'" in issue.message and "'out'" in issue.message


def test_a_branch_that_leads_back_to_its_parallel() -> None:
    definition = fanning(log("a", "fan"), log("b"))

    issue = one_with(validate_workflow(definition, PROFESSIONAL), "branch_escapes")

    assert issue.step_id == "fan"
    assert "'fan'" in issue.message


# --- invalid_config -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"join": "n_of_m"},
        {"join": "n_of_m", "n": 4},
        {"join": "all", "n": 1},
        {"join": "any", "n": 1},
        {"n": 2},
    ],
    ids=["n_of_m-without-n", "n-over-branches", "n-with-all", "n-with-any", "n-with-default-join"],
)
def test_a_join_and_its_n_that_do_not_fit(config: dict[str, Any]) -> None:
    definition = fanning(log("a"), log("b"), log("c"), parallel=fan(["a", "b", "c"], **config))

    issue = only_error(validate_workflow(definition, PROFESSIONAL), "invalid_config")

    assert (issue.step_id, issue.field) == ("fan", "steps[1].config.n")


def test_a_while_loop_with_concurrency_over_one() -> None:
    config = {"while": "$.count.index < 4", "body": "b", "concurrency": 2}
    loop = step("count", "loop", "out", config=config)
    definition = workflow(
        step("input", "input", "count"), loop, log("b", "count"), step("out", "output")
    )

    issue = only_error(validate_workflow(definition, PROFESSIONAL), "invalid_config")

    assert (issue.step_id, issue.field) == ("count", "steps[1].config.concurrency")


def test_a_for_each_loop_may_run_iterations_at_once() -> None:
    clean(validate_workflow(looping(log("b", "each"), loop=each(concurrency=50)), PROFESSIONAL))


# --- the plan's cap on iterations -----------------------------------------------------------


def test_max_iterations_over_the_plans_cap_is_a_tier_restriction() -> None:
    capped = looping(log("b", "each"), loop=each(max_iterations=1001))

    issue = only_error(validate_workflow(capped, PROFESSIONAL), "tier_restriction")

    assert (issue.step_id, issue.field) == ("each", "steps[1].config.max_iterations")
    assert "1000" in issue.message
    clean(
        validate_workflow(looping(log("b", "each"), loop=each(max_iterations=1000)), PROFESSIONAL)
    )
    clean(validate_workflow(capped, ENTERPRISE))


def test_an_enterprise_override_of_the_cap_applies_to_max_iterations() -> None:
    limits = replace(ENTERPRISE, max_loop_iterations=3)
    over = looping(log("b", "each"), loop=each(max_iterations=4))

    issue = only_error(validate_workflow(over, limits), "tier_restriction")

    assert issue.field == "steps[1].config.max_iterations"
    clean(validate_workflow(looping(log("b", "each"), loop=each(max_iterations=3)), limits))
    clean(validate_workflow(over, None))


def test_loops_and_parallels_need_professional() -> None:
    for definition in (looping(log("b", "each")), fanning(log("a"), log("b"))):
        assert "tier_restriction" in error_codes(validate_workflow(definition, FREE))
        clean(validate_workflow(definition, PROFESSIONAL))


# --- the catalog ----------------------------------------------------------------------------

CONTROL_TEMPLATES = sorted(
    template_id
    for template_id, template in catalog().items()
    if {"loop", "parallel", "aggregate"}
    & {s["type"] for s in _template_definition(template_id)["steps"]}
)


def test_the_catalog_has_templates_with_loops_parallels_and_aggregates() -> None:
    kinds = {
        s["type"]
        for template_id in CONTROL_TEMPLATES
        for s in _template_definition(template_id)["steps"]
    }
    assert {"loop", "parallel", "aggregate"} <= kinds


@pytest.mark.parametrize("template_id", CONTROL_TEMPLATES)
def test_catalog_templates_with_loops_and_parallels_keep_the_shape_rules(template_id: str) -> None:
    tier = catalog()[template_id].tier
    definition = _template_definition(template_id)

    for plan in TIER_ORDER[TIER_ORDER.index(tier) :]:
        report = validate_workflow(definition, PLANS[plan])
        assert not SCOPE_CODES & set(error_codes(report)), (plan, report.errors)
        assert report.errors == [], (plan, report.errors)


def test_a_definition_whose_loops_and_parallels_walk_too_far_is_refused_unchecked() -> None:
    """Many parallels whose branches each reach a long chain: the walks the shape rules (and
    the engine) make would pass `WALK_BUDGET`, so the definition is refused instead."""
    length, fans = 1200, 150
    chain = [log(f"s{i}", f"s{i + 1}" if i + 1 < length else "out") for i in range(length)]
    parallels = [
        step(
            f"p{k}",
            "parallel",
            f"p{k + 1}" if k + 1 < fans else "s0",
            config={"branches": [f"s{k}", f"t{k}"]},
        )
        for k in range(fans)
    ]
    tails = [log(f"t{k}", None) for k in range(fans)]
    definition = workflow(
        step("input", "input", "p0"), *parallels, *chain, *tails, step("out", "output")
    )
    assert "graph_too_complex" in error_codes(validate_workflow(definition, None))
