"""Step instance ids (`engine.instances`): which run of a step an attempt belongs to.

Property-based: any step id and any scope of loop iterations read back from the instance id
they make, entering a loop's iteration and leaving it again are inverses, and a next step
stays in the iteration it was reached from.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.instances import (
    MAX_LOOP_NESTING,
    Frame,
    base,
    enter,
    innermost,
    instance_of,
    leave,
    render_scope,
    same_scope,
    scope_of,
)
from engine.steptypes import STEP_ID_PATTERN

STEP_IDS = st.from_regex(STEP_ID_PATTERN, fullmatch=True)
"""Any id the validator accepts for a step (never `@`, `:` or `/`)."""
INDEXES = st.integers(min_value=0, max_value=10**6)
FRAMES = st.builds(Frame, STEP_IDS, INDEXES)
SCOPES = st.lists(FRAMES, max_size=MAX_LOOP_NESTING + 2).map(tuple)


# --- examples -------------------------------------------------------------------------------


def test_a_step_outside_every_loop_is_its_own_instance() -> None:
    assert instance_of("charge", ()) == "charge"
    assert base("charge") == "charge"
    assert scope_of("charge") == ()
    assert innermost("charge") is None
    assert same_scope("charge", "notify") == "notify"


def test_the_documented_instance_ids_read_back() -> None:
    assert instance_of("double", (Frame("each", 3),)) == "double@each:3"
    assert scope_of("double@each:3") == (Frame("each", 3),)
    nested = (Frame("outer", 1), Frame("inner", 0))
    assert instance_of("x", nested) == "x@outer:1/inner:0"
    assert scope_of("x@outer:1/inner:0") == nested
    assert base("x@outer:1/inner:0") == "x"
    assert innermost("x@outer:1/inner:0") == Frame("inner", 0)
    assert render_scope(nested) == "outer:1/inner:0"


def test_entering_and_leaving_loops_by_example() -> None:
    # The loop `each` outside any other: its body's first step in iteration 3.
    assert enter("each", "each", 3, "double") == "double@each:3"
    assert leave("double@each:3", "each") == "each"
    # The inner loop runs in iteration 1 of `outer`; its body in its own iteration 0.
    assert enter("inner@outer:1", "inner", 0, "cell") == "cell@outer:1/inner:0"
    assert leave("cell@outer:1/inner:0", "inner") == "inner@outer:1"
    assert leave("inner@outer:1", "outer") == "outer"
    # A next step stays in its iteration.
    assert same_scope("cell@outer:1/inner:0", "label") == "label@outer:1/inner:0"


@pytest.mark.parametrize("step_id", ["a-1", "_x", "Z9", "loop-2-b"])
def test_ids_with_digits_and_hyphens_keep_their_frames_apart(step_id: str) -> None:
    scope = (Frame(step_id, 12), Frame(f"{step_id}-in", 0))
    instance = instance_of(step_id, scope)
    assert (base(instance), scope_of(instance)) == (step_id, scope)


# --- properties -----------------------------------------------------------------------------


@given(STEP_IDS, SCOPES)
def test_an_instance_id_reads_back_as_its_step_and_scope(step_id: str, scope: tuple) -> None:
    instance = instance_of(step_id, scope)
    assert base(instance) == step_id
    assert scope_of(instance) == scope
    assert instance_of(base(instance), scope_of(instance)) == instance
    assert innermost(instance) == (scope[-1] if scope else None)
    assert ("@" in instance) == bool(scope)


@given(STEP_IDS, SCOPES)
def test_an_instance_id_is_the_step_then_its_rendered_scope(step_id: str, scope: tuple) -> None:
    instance = instance_of(step_id, scope)
    if scope:
        assert instance == f"{step_id}@{render_scope(scope)}"
        assert render_scope(scope).count("/") == len(scope) - 1
        assert all(
            re.fullmatch(r"[A-Za-z0-9_-]+:\d+", part)
            for part in instance[len(step_id) + 1 :].split("/")
        )
    else:
        assert instance == step_id


@given(STEP_IDS, STEP_IDS, SCOPES, SCOPES)
def test_distinct_steps_or_scopes_make_distinct_instance_ids(
    one: str, other: str, scope: tuple, other_scope: tuple
) -> None:
    same = (one, scope) == (other, other_scope)
    assert (instance_of(one, scope) == instance_of(other, other_scope)) == same


@given(STEP_IDS, STEP_IDS, SCOPES, INDEXES)
def test_enter_adds_one_frame_and_leave_takes_it_off(
    loop_id: str, body: str, around: tuple, index: int
) -> None:
    loop = instance_of(loop_id, around)
    inside = enter(loop, loop_id, index, body)
    assert base(inside) == body
    assert scope_of(inside) == (*around, Frame(loop_id, index))
    assert innermost(inside) == Frame(loop_id, index)
    assert leave(inside, loop_id) == loop


@given(STEP_IDS, STEP_IDS, STEP_IDS, SCOPES, INDEXES)
def test_any_body_step_of_an_iteration_leaves_to_the_same_loop_instance(
    loop_id: str, body: str, later: str, around: tuple, index: int
) -> None:
    loop = instance_of(loop_id, around)
    first = enter(loop, loop_id, index, body)
    following = same_scope(first, later)
    assert leave(following, loop_id) == loop == leave(first, loop_id)


@given(STEP_IDS, STEP_IDS, SCOPES)
def test_same_scope_keeps_the_scope_and_changes_the_step(
    step_id: str, following: str, scope: tuple
) -> None:
    instance = instance_of(step_id, scope)
    moved = same_scope(instance, following)
    assert moved == instance_of(following, scope)
    assert base(moved) == following
    assert scope_of(moved) == scope_of(instance)
    assert same_scope(moved, step_id) == instance


@given(STEP_IDS, st.lists(st.tuples(STEP_IDS, INDEXES), max_size=MAX_LOOP_NESTING + 1), STEP_IDS)
def test_entering_nested_loops_one_by_one_then_leaving_them_returns_outside(
    start: str, loops: list[tuple[str, int]], body: str
) -> None:
    """Going in through each loop (outermost first) and out again in reverse order walks
    back through the same loop instances."""
    instance = start
    visited = []
    for loop_id, index in loops:
        loop = same_scope(instance, loop_id)
        visited.append(loop)
        instance = enter(loop, loop_id, index, body)
    assert scope_of(instance) == tuple(Frame(loop_id, index) for loop_id, index in loops)
    for loop_id, _ in reversed(loops):
        instance = leave(instance, loop_id)
        assert instance == visited.pop()
        instance = same_scope(instance, body)
    assert scope_of(instance) == ()
