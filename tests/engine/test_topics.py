"""Subscription topics: what they name, and which events they match."""

from __future__ import annotations

import pytest

from engine import topics
from foundation.errors import InvalidInput


def test_topics_split_into_workflow_changes_and_execution_progress() -> None:
    chosen = topics.parse(["workflow:w1", "execution:e1"])
    assert chosen.matches("w1", None)  # the workflow's own change
    assert not chosen.matches("w1", "e2")  # another execution of that workflow
    assert chosen.matches("w2", "e1")
    assert not chosen.matches(None, None)
    every = topics.parse(["all_workflows", "all_executions"])
    assert every.matches("w9", None) and every.matches("w9", "e9")
    assert topics.parse(["all_executions"]).matches("w9", "e9")
    assert not topics.parse(["all_executions"]).matches("w9", None)


@pytest.mark.parametrize(
    "names",
    [[], ["workflow:"], ["execution"], ["everything"], ["workflow:" + "x" * 65], ["x"] * 101],
)
def test_malformed_topics_are_invalid_input(names: list[str]) -> None:
    with pytest.raises(InvalidInput):
        topics.parse(names)
