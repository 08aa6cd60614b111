"""Run time: a tenant's input checked against its stored schema, in bounded work.

Nothing is ever fetched (the registry refuses every retrieval), `pattern` and
`patternProperties` run on RE2, `uniqueItems` is linear, and every keyword evaluation
spends from a per-call budget, so `$ref` fan-out cannot multiply the work.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend

from engine.schemas.checks import check_schema
from engine.schemas.problems import (
    MAX_EVALUATIONS,
    MAX_PROBLEMS,
    Problem,
    order,
    regex,
    registry,
    short,
)


def validate(schema: object, value: Any) -> list[Problem]:
    """Why `value` does not satisfy `schema` (paths inside the value), sorted by path.

    A schema that could not have been saved today (a definition stored before these
    rules) yields its own problems, marked `in_schema`, instead of being applied.
    """
    try:
        return _apply(schema, value, MAX_EVALUATIONS)
    except _OverBudget:
        return [Problem((), "the input_schema takes too much work to check this input", True)]


QUICK_NODES: Final = 64
"""A schema of at most this many nodes (objects, arrays and values) may be checked quickly."""
QUICK_EVALUATIONS: Final = 200
"""Keyword evaluations a quick check may spend before it gives up."""


def validate_quickly(schema: object, value: Any) -> list[Problem] | None:
    """`validate`, when it is sure to be cheap: a small schema, at most `QUICK_EVALUATIONS`
    keyword evaluations. None when it is not: validate it the long way, off the loop.

    Paired with a small input (the caller's bound), the work is a few hundred keyword
    evaluations over a few kilobytes: less than sending it to another process.
    """
    if not _within(schema, QUICK_NODES):
        return None
    try:
        return _apply(schema, value, QUICK_EVALUATIONS)
    except _OverBudget:
        return None


def _within(value: object, nodes: int) -> bool:
    """Whether `value` has at most `nodes` nodes; stops counting past them."""
    pending = [value]
    while pending:
        nodes -= 1
        if nodes < 0:
            return False
        item = pending.pop()
        if isinstance(item, Mapping | list):
            if len(item) > nodes:
                return False
            pending.extend(item.values() if isinstance(item, Mapping) else item)
    return True


def _apply(schema: object, value: Any, evaluations: int) -> list[Problem]:
    """The problems of `value`, spending at most `evaluations` (else `_OverBudget`); those
    of the schema itself, marked `in_schema`, when it may not be applied."""
    compiled = _compiled(schema)
    if isinstance(compiled, list):
        return [problem._replace(in_schema=True) for problem in compiled]
    budget = _BUDGET.set([evaluations])
    found: list[Problem] = []
    try:
        for error in compiled.iter_errors(value):
            found.append(Problem(tuple(error.absolute_path), short(error.message)))
            if len(found) >= MAX_PROBLEMS:
                break
    except _OverBudget:
        raise
    except RecursionError:
        return [Problem((), "the input_schema's references nest too deeply for this input", True)]
    except Exception as error:  # whatever a tenant schema trips over is its problem, not INTERNAL
        return [Problem((), short(f"the input_schema cannot be applied: {error}"), True)]
    finally:
        _BUDGET.reset(budget)
    return sorted(found, key=lambda problem: [order(part) for part in problem.path])


class _OverBudget(Exception):
    pass


_BUDGET: ContextVar[list[int]] = ContextVar("schema_budget")


Keyword = Callable[[Validator, Any, Any, Mapping[str, Any]], Iterator[ValidationError] | None]


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and regex(pattern).search(instance) is None:
        yield ValidationError(f"{short(repr(instance))} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, Mapping) or not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        compiled = regex(pattern)
        for key, item in instance.items():
            if compiled.search(key) is not None:
                yield from validator.descend(item, subschema, path=key, schema_path=pattern)


def _unique_items(
    validator: Any, unique: object, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """Linear, where jsonschema compares unhashable items pairwise."""
    if not unique or not isinstance(instance, list) or not validator.is_type(instance, "array"):
        return
    seen: set[str] = set()
    for item in instance:
        key = json.dumps(_canonical(item), sort_keys=True)
        if key in seen:
            yield ValidationError(f"{short(repr(instance))} has non-unique elements")
            return
        seen.add(key)


def _canonical(value: object) -> object:
    """JSON Schema equality as a value: 1 == 1.0, but true is not 1."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def _counted(keyword: Keyword) -> Keyword:
    def evaluate(
        validator: Validator, value: Any, instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[ValidationError] | None:
        left = _BUDGET.get(None)
        if left is not None:
            left[0] -= 1
            if left[0] < 0:
                raise _OverBudget
        return keyword(validator, value, instance, schema)

    return evaluate


_KEYWORDS: Final[dict[str, Keyword]] = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "uniqueItems": _unique_items,
}
# No format checker: `format` stays an annotation, as by jsonschema's default, so the
# `regex` format never hands a tenant's pattern to Python's backtracking `re`.
TenantValidator: Final = extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {name: _counted(keyword) for name, keyword in _KEYWORDS.items()}
)


@dataclass(slots=True)
class _Cache:
    """Compiled validators by the schema's digest: schemas are checked at every start."""

    size: int
    entries: OrderedDict[str, Validator | list[Problem]]
    lock: threading.Lock

    def get(self, digest: str) -> Validator | list[Problem] | None:
        with self.lock:
            found = self.entries.get(digest)
            if found is not None:
                self.entries.move_to_end(digest)
            return found

    def put(self, digest: str, compiled: Validator | list[Problem]) -> None:
        with self.lock:
            self.entries[digest] = compiled
            self.entries.move_to_end(digest)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


_CACHE: Final = _Cache(256, OrderedDict(), threading.Lock())


def _compiled(schema: object) -> Validator | list[Problem]:
    """The validator for `schema`, or why it may not be applied."""
    try:
        text = json.dumps(schema, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return check_schema(schema) or [Problem((), "the input_schema is not JSON")]
    digest = hashlib.sha256(text.encode()).hexdigest()
    compiled = _CACHE.get(digest)
    if compiled is None:
        problems = check_schema(schema)
        # Built on a copy: the cached validator must not follow later changes to the caller's dict.
        compiled = problems or TenantValidator(json.loads(text), registry=registry())
        _CACHE.put(digest, compiled)
    return compiled
