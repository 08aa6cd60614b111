"""Reading a stored definition as the engine walks it: steps, order, what follows what."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any, ClassVar

from engine import expressions
from engine.instances import Scope, base, instance_of, scope_of
from engine.tools import StepFailure

_GRAPHS_KEPT = 16
_MISSING = object()


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
        self.bodies: dict[str, frozenset[str]] = {
            step_id: self._reach(str(config["body"]), stop=step_id)
            for step_id, config in self._configs("loop")
            if config.get("body") in self.steps
        }
        """Each loop's body: the steps its `body` leads to before it returns to the loop."""
        self.branches: dict[str, frozenset[str]] = {}
        """Each branch's steps, by the branch's first step."""
        self.branch_of: dict[str, tuple[str, str]] = {}
        """Each step on a parallel's branch: (the parallel, the branch's first step); the
        innermost parallel when they nest."""
        sized: list[tuple[int, str, str, frozenset[str]]] = []
        for step_id, config in self._configs("parallel"):
            for start in config.get("branches") or []:
                if start in self.steps:
                    reached = self._reach(str(start))
                    self.branches[str(start)] = reached
                    sized.append((len(reached), step_id, str(start), reached))
        for _, parallel, start, reached in sorted(sized, reverse=True):
            for member in reached:
                self.branch_of[member] = (parallel, start)

    def branch_members(self, start: str) -> frozenset[str]:
        return self.branches.get(start, frozenset())

    def resume_point(self, step_id: str) -> str:
        """Where a retry of an execution that failed at `step_id` starts again: the step
        itself, or the outermost loop or parallel around it (its children's state is theirs)."""
        current = base(step_id)
        while True:
            around = [loop for loop, body in self.bodies.items() if current in body]
            around += [self.branch_of[current][0]] if current in self.branch_of else []
            if not around:
                return current
            current = max(around, key=lambda step: len(self._reach(step)))

    def _configs(self, kind: str) -> list[tuple[str, Mapping[str, Any]]]:
        return [
            (step_id, step.get("config") or {})
            for step_id, step in self.steps.items()
            if step.get("type") == kind
        ]

    def _reach(self, start: str, stop: str | None = None) -> frozenset[str]:
        """The steps reachable from `start` (included), not going through `stop`."""
        reached: set[str] = set()
        frontier = [start]
        while frontier:
            current = frontier.pop()
            if current in reached or current == stop or current not in self.steps:
                continue
            reached.add(current)
            frontier.extend(self.successors(current))
        return frozenset(reached)

    def step(self, step_id: str) -> Mapping[str, Any]:
        """The step an id names, or an instance id runs (`engine.instances`)."""
        found = self.steps.get(step_id)
        return found if found is not None else self.steps[base(step_id)]

    def name(self, step_id: str) -> str:
        return str(self.step(step_id).get("name") or base(step_id))

    def next_of(self, step_id: str) -> str | None:
        """The step after a non-branching one (None at the end of a path)."""
        following = self.step(step_id).get("next")
        return str(following) if following else None

    def ends_iteration(self, step_id: str, following: str | None) -> bool:
        """Whether going from `step_id` to `following` returns to a loop from its body."""
        return following is not None and step_id in self.bodies.get(following, ())

    def context(
        self, instance: str, execution_input: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> ChainMap[str, Any]:
        """What the paths of `instance` read (`context_of`), seen from its iterations:
        `$.<loop>.item` and `$.<loop>.index` are its own, and `$.<step>` of a step of the
        same iteration is that iteration's output."""
        context = context_of(execution_input, outputs)
        around: Scope = ()
        for frame in scope_of(instance):
            looped = outputs.get(instance_of(frame.loop_id, around))
            state = dict(looped) if isinstance(looped, Mapping) else {}
            items = state.pop("items", None)
            within = isinstance(items, list) and frame.index < len(items)
            item = items[frame.index] if within else None
            context[frame.loop_id] = {**state, "item": item, "index": frame.index}
            around = (*around, frame)
            for member in self.bodies.get(frame.loop_id, ()):
                output = outputs.get(instance_of(member, around), _MISSING)
                if output is not _MISSING:
                    context[member] = output
        return context

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
        elif step.get("type") == "loop" and config.get("body"):
            found.append(config["body"])
        elif step.get("type") == "parallel":
            found += list(config.get("branches") or [])
        return [s for s in found if s in self.steps]


def context_of(
    execution_input: Mapping[str, Any], outputs: Mapping[str, Any]
) -> ChainMap[str, Any]:
    """What paths read: `$.input` is the execution input, `$.<step>` a step's output.

    A view over the outputs, not a copy: a step of a long loop does not copy them all."""
    return ChainMap({"input": execution_input}, outputs)  # type: ignore[arg-type]


def resolve_values(value: Any, context: Mapping[str, Any]) -> Any:
    """A literal structure where every string starting with `$` is replaced by its path's value."""
    if isinstance(value, str) and value.startswith("$"):
        try:
            found = expressions.resolve(expressions.parse_path(value), context)
            # `$` alone names the whole context: a snapshot of it, not the live view.
            return dict(found) if isinstance(found, ChainMap) else found
        except expressions.ExpressionError as error:
            raise StepFailure(
                "invalid_path", f"{value!r} is not a path: {error.message}", retryable=False
            ) from None
    if isinstance(value, Mapping):
        return {key: resolve_values(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_values(item, context) for item in value]
    return value


def choose_branch(
    step: Mapping[str, Any], context: Mapping[str, Any], seen: list[Any] | None = None
) -> tuple[str | None, int]:
    """The `next` of the first condition that holds (and its index), else the default (-1).

    `seen`, when given, receives each condition evaluated: its text, whether it held and
    the value of each path it read.
    """
    config = step.get("config") or {}
    for index, branch in enumerate(config.get("conditions", [])):
        text = branch["condition"]
        try:
            parsed = expressions.parse(text)
            holds = expressions.evaluate(parsed, context)
            if seen is not None:
                values = {
                    path.render(): expressions.resolve(path, context)
                    for path in expressions.references(parsed)
                }
                seen.append({"condition": text, "holds": holds is True, "values": values})
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
