"""The `aggregate` step: one value from earlier outputs, typically a loop's or a parallel's.

Each source is a path. A loop's output contributes its `results`, a parallel's the output
of each branch that succeeded, an array its items, anything else itself. An optional `path`
(`$.amount`) is read from each item before the strategy combines them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from engine import expressions
from engine.graph import resolve_values
from engine.tools import StepFailure

STRATEGIES: Final = (
    "collect",
    "list",
    "concat",
    "merge",
    "sum",
    "count",
    "min",
    "max",
    "first_non_null",
)


def aggregate(config: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    items: list[Any] = []
    for source in config.get("sources") or []:
        items += _items_of(resolve_values(source, context))
    if config.get("path"):
        path = _parsed(str(config["path"]))
        items = [
            expressions.resolve(path, item) if isinstance(item, Mapping) else None for item in items
        ]
    strategy = str(config.get("strategy") or "collect")
    if strategy in ("collect", "list"):
        return items
    if strategy == "count":
        return len(items)
    if strategy == "first_non_null":
        return next((item for item in items if item is not None), None)
    if strategy == "concat":
        return [part for item in items for part in (item if isinstance(item, list) else [item])]
    if strategy == "merge":
        merged: dict[str, Any] = {}
        for item in items:
            if item is None:
                continue
            if not isinstance(item, Mapping):
                raise _refused(f"merge combines objects; one item is {_kind(item)}")
            merged.update(item)
        return merged
    numbers = [item for item in items if item is not None]
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise _refused(f"{strategy} combines numbers; one item is {_kind(number)}")
    if strategy == "sum":
        total = math.fsum(numbers)
        return int(total) if all(isinstance(n, int) for n in numbers) else total
    if not numbers:
        return None
    return min(numbers) if strategy == "min" else max(numbers)


def _items_of(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        if isinstance(value.get("results"), list) and "count" in value:
            return list(value["results"])  # a loop's output
        branches = value.get("branches")
        if isinstance(branches, Mapping) and "join" in value:  # a parallel's output
            return [out for out in branches.values() if not _is_error(out)]
    return [value]


def _is_error(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"error"}


def _parsed(path: str) -> expressions.PathRef:
    """The path read from each item, parsed once for all of them."""
    try:
        return expressions.parse_path(path)
    except expressions.ExpressionError as error:
        raise _refused(f"{path!r} is not a path: {error.message}") from None


def _refused(message: str) -> StepFailure:
    return StepFailure("aggregate_error", message, retryable=False)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"
