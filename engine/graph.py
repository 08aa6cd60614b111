"""Reading a stored definition as the engine walks it: steps, order, what follows what."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from engine import expressions
from engine.tools import StepFailure

_GRAPHS_KEPT = 16


class Graph:
    """A definition's steps by id, with the entry step and the edges the engine follows."""

    _recent: ClassVar[dict[int, tuple[Mapping[str, Any], Graph]]] = {}

    @classmethod
    def of(cls, definition: Mapping[str, Any]) -> Graph:
        """The graph of this very definition object, built once while it is in use.

        A transition reads the graph several times and a chain of inline steps many
        more; building it is linear in the definition, so a long workflow would pay
        its whole length at every read. Keyed by identity (a loaded definition is never
        changed in place), holding the definition so its id cannot be reused meanwhile.
        """
        kept = cls._recent.get(id(definition))
        if kept is not None and kept[0] is definition:
            return kept[1]
        graph = cls(definition)
        if len(cls._recent) >= _GRAPHS_KEPT:
            cls._recent = {}  # a new dict, not clear(): another thread may be reading
        cls._recent[id(definition)] = (definition, graph)
        return graph

    def __init__(self, definition: Mapping[str, Any]) -> None:
        self.steps: dict[str, Mapping[str, Any]] = {s["id"]: s for s in definition["steps"]}
        self.order = [s["id"] for s in definition["steps"]]
        self.positions = {step_id: number for number, step_id in enumerate(self.order, 1)}
        """1-based position of each step: its entry's in the seed's `steps` list."""
        entries = [s["id"] for s in definition["steps"] if s.get("type") == "input"]
        self.entry = entries[0] if entries else self.order[0]

    def step(self, step_id: str) -> Mapping[str, Any]:
        return self.steps[step_id]

    def name(self, step_id: str) -> str:
        return str(self.steps[step_id].get("name") or step_id)

    def next_of(self, step_id: str) -> str | None:
        """The step after a non-branching one (None at the end of a path)."""
        following = self.steps[step_id].get("next")
        return str(following) if following else None

    def before(self, step_id: str) -> set[str]:
        """Steps on a path from the entry to `step_id` (excluded): whose outputs it may read."""
        reached: set[str] = set()
        frontier = [self.entry]
        while frontier:
            current = frontier.pop()
            if current in reached or current == step_id:
                continue
            reached.add(current)
            frontier.extend(self.successors(current))
        return reached

    def successors(self, step_id: str) -> list[str]:
        step = self.steps[step_id]
        config = step.get("config") or {}
        found = [step["next"]] if step.get("next") else []
        if step.get("type") == "condition":
            found += [branch["next"] for branch in config.get("conditions", [])]
            found += [config["default"]] if config.get("default") else []
        return [s for s in found if s in self.steps]


def context_of(execution_input: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What paths read: `$.input` is the execution input, `$.<step>` a step's output."""
    return {**outputs, "input": execution_input}


def resolve_values(value: Any, context: Mapping[str, Any]) -> Any:
    """A literal structure where every string starting with `$` is replaced by its path's value."""
    if isinstance(value, str) and value.startswith("$"):
        try:
            return expressions.resolve(expressions.parse_path(value), context)
        except expressions.ExpressionError as error:
            raise StepFailure(
                "invalid_path", f"{value!r} is not a path: {error.message}", retryable=False
            ) from None
    if isinstance(value, Mapping):
        return {key: resolve_values(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_values(item, context) for item in value]
    return value


def choose_branch(step: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str | None, int]:
    """The `next` of the first condition that holds (and its index), else the default (-1)."""
    config = step.get("config") or {}
    for index, branch in enumerate(config.get("conditions", [])):
        text = branch["condition"]
        try:
            holds = expressions.evaluate(expressions.parse(text), context)
        except (expressions.ExpressionError, expressions.EvaluationError) as error:
            raise StepFailure(
                "condition_error",
                f"condition {index + 1} ({text!r}) cannot be evaluated",
                details=str(error),
                retryable=False,
            ) from None
        if holds is True:
            return str(branch["next"]), index
    default = config.get("default")
    return (str(default) if default else None), -1
