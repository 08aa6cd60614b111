"""`patches.fewest` folds many changes inside one output into setting it whole: the document
it makes is the same, with no more paths than before."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.patches import Path, fewest
from engine.rows import _set_in

KEYS = st.sampled_from(["a@loop:0", "a@loop:1", "other"])


def apply(document: dict[str, Any], paths: list[tuple[Path, Any]]) -> dict[str, Any]:
    for path, value in paths:
        document = _set_in(document, path, value)
    return document


@st.composite
def changes(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[Path, Any]]]:
    """A document of loop-like outputs, and changes made to it one after another."""
    start: dict[str, Any] = {"loop": {"results": [None] * 4, "finished": 0}, "other": 1}
    paths: list[tuple[Path, Any]] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            paths.append((("loop", "results", draw(st.integers(0, 3))), draw(st.integers())))
        elif kind == 1:
            paths.append((("loop", "finished"), draw(st.integers())))
        else:
            paths.append(((draw(KEYS),), {"n": draw(st.integers())}))
    return start, paths


@given(changes())
def test_folded_paths_make_the_same_document_with_no_more_paths(
    made: tuple[dict[str, Any], list[tuple[Path, Any]]],
) -> None:
    start, paths = made
    final = apply(start, paths)
    folded = fewest(paths, final)
    assert apply(start, folded) == final
    assert len(folded) <= len(paths)


def test_many_results_of_one_loop_fold_into_one_path() -> None:
    start = {"loop": {"results": [None] * 3, "finished": 0}}
    paths: list[tuple[Path, Any]] = [(("loop", "results", i), i) for i in range(3)]
    paths.append((("loop", "finished"), 3))
    final = apply(start, paths)
    assert fewest(paths, final) == [(("loop",), {"results": [0, 1, 2], "finished": 3})]
