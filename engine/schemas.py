"""Every use of a tenant's JSON Schema: checked when saved, applied when an execution starts.

A tenant schema is hostile data. It never makes the process open a connection or a file
(references resolve inside the document or not at all), its regexes run on RE2 in linear
time, and its size, depth and the work one validation may do are bounded, so a schema can
neither hang the event loop nor turn into INTERNAL: whatever goes wrong is a `Problem`.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, NamedTuple
from urllib.parse import unquote

import re2  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# Checking against the meta-schema costs about 10 ms per KiB, on the event loop: 32 KiB is
# many times any real input schema and keeps a save under half a second.
MAX_SCHEMA_BYTES: Final = 32 * 1024
# Compiling a pattern up to RE2's memory cap costs up to 2 ms; this bounds a schema's total.
MAX_PATTERNS: Final = 100
MAX_SCHEMA_DEPTH: Final = 32
MAX_PROBLEMS: Final = 50
MAX_MESSAGE: Final = 300
# Keyword evaluations one validation may make (about 10 µs each, so well under a second):
# `$ref`s and `unevaluated*` can multiply the work of a small schema far beyond its size.
MAX_EVALUATIONS: Final = 50_000
DIALECTS: Final = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2020-12/schema#",
    }
)
_REFERENCES: Final = ("$ref", "$dynamicRef")
# Applicators that evaluate a subschema against the same instance: a cycle of them never ends.
_IN_PLACE_ONE: Final = ("not", "if", "then", "else")
_IN_PLACE_MANY: Final = ("allOf", "anyOf", "oneOf")

Path = tuple[str | int, ...]


class Problem(NamedTuple):
    """One thing wrong: where (keys and indexes) and what.

    `in_schema` says the schema itself is unusable, rather than the value breaking it.
    """

    path: Path
    message: str
    in_schema: bool = False


def check_schema(schema: object) -> list[Problem]:
    """Why `schema` may not be saved as an input schema; nothing when it may.

    Paths are inside the schema. Beyond the Draft 2020-12 meta-schema: bounded size and
    depth, finite numbers, references inside the document that resolve, no `$id` below the
    root (it would make `#` mean another document), and patterns RE2 accepts.
    """
    problems = _shape(schema)
    if problems:
        return problems
    try:
        size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode())
    except ValueError as error:  # an integer too long to print, for one
        return [Problem((), _short(f"the schema is not JSON: {error}"))]
    if size > MAX_SCHEMA_BYTES:
        return [Problem((), f"the schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are allowed")]
    problems = _meta(schema)
    if problems:
        return problems
    problems = [*_keywords(schema), *_references(schema)]
    return problems or _cycles(schema)


def validate(schema: object, value: Any) -> list[Problem]:
    """Why `value` does not satisfy `schema` (paths inside the value), sorted by path.

    A schema that could not have been saved today (a definition stored before these
    rules) yields its own problems, marked `in_schema`, instead of being applied.
    """
    compiled = _compiled(schema)
    if isinstance(compiled, list):
        return [problem._replace(in_schema=True) for problem in compiled]
    budget = _BUDGET.set([MAX_EVALUATIONS])
    found: list[Problem] = []
    try:
        for error in compiled.iter_errors(value):
            found.append(Problem(tuple(error.absolute_path), _short(error.message)))
            if len(found) >= MAX_PROBLEMS:
                break
    except _OverBudget:
        return [Problem((), "the input_schema takes too much work to check this input", True)]
    except RecursionError:
        return [Problem((), "the input_schema's references nest too deeply for this input", True)]
    except Exception as error:  # whatever a tenant schema trips over is its problem, not INTERNAL
        return [Problem((), _short(f"the input_schema cannot be applied: {error}"), True)]
    finally:
        _BUDGET.reset(budget)
    return sorted(found, key=lambda problem: [_order(part) for part in problem.path])


def _order(part: str | int) -> tuple[int, int, str]:
    return (0, part, "") if isinstance(part, int) else (1, 0, part)


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


# --- save-time checks -------------------------------------------------------------------


def _walk(value: object, path: Path = ()) -> Iterator[tuple[Path, object]]:
    """Every JSON value in `value` with its path, parents first, down to the depth cap."""
    stack: list[tuple[Path, object]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        yield where, item
        if len(where) > MAX_SCHEMA_DEPTH:
            continue
        if isinstance(item, Mapping):
            stack.extend(((*where, key), child) for key, child in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend(
                ((*where, index), child) for index, child in reversed(list(enumerate(item)))
            )


def _objects(schema: object) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    """Every object in the schema: any of them may become a schema through a JSON pointer."""
    for path, item in _walk(schema):
        if isinstance(item, Mapping):
            yield path, item


def _shape(schema: object) -> list[Problem]:
    if not isinstance(schema, Mapping | bool):
        return [Problem((), "a JSON Schema is an object or a boolean")]
    problems: list[Problem] = []
    for path, item in _walk(schema):
        if len(path) > MAX_SCHEMA_DEPTH:
            return [
                Problem(path[:MAX_SCHEMA_DEPTH], f"nests deeper than {MAX_SCHEMA_DEPTH} levels")
            ]
        if isinstance(item, float) and not math.isfinite(item):
            problems.append(Problem(path, f"{item} is not a JSON number"))
        elif isinstance(item, Mapping) and not all(isinstance(key, str) for key in item):
            problems.append(Problem(path, "object keys are strings"))
        elif not isinstance(item, Mapping | list | str | int | float | bool | None):
            problems.append(Problem(path, f"a {type(item).__name__} is not a JSON value"))
    return problems


_META: Final = Draft202012Validator(Draft202012Validator.META_SCHEMA)  # no format checker: no `re`


def _meta(schema: object) -> list[Problem]:
    """The meta-schema's complaints; regexes are RE2's to judge, not Python's `re`."""
    problems = [
        Problem(tuple(e.absolute_path), _short(e.message)) for e in _META.iter_errors(schema)
    ]
    return sorted(problems, key=lambda problem: [_order(part) for part in problem.path])[:20]


def _keywords(schema: object) -> Iterator[Problem]:
    for path, item in _objects(schema):
        for key in _REFERENCES:
            reference = item.get(key)
            if isinstance(reference, str) and not reference.startswith("#"):
                yield Problem(
                    (*path, key),
                    f"{key} {reference!r} leaves the schema: only references inside it, "
                    "starting with '#', are allowed",
                )
        if isinstance(item.get("$id"), str) and path:
            yield Problem((*path, "$id"), "$id is allowed only at the root of the schema")
        dialect = item.get("$schema")
        if isinstance(dialect, str) and (path or dialect not in DIALECTS):
            yield Problem((*path, "$schema"), "only Draft 2020-12, declared at the root, is used")
    yield from _patterns(schema)


def _patterns(schema: object) -> Iterator[Problem]:
    found: list[tuple[Path, str]] = []
    for path, item in _objects(schema):
        if isinstance(item.get("pattern"), str):
            found.append(((*path, "pattern"), item["pattern"]))
        if isinstance(item.get("patternProperties"), Mapping):
            found += [((*path, "patternProperties", key), key) for key in item["patternProperties"]]
    if len(found) > MAX_PATTERNS:
        yield Problem(
            (), f"the schema has {len(found)} patterns; at most {MAX_PATTERNS} are allowed"
        )
        return
    for path, pattern in found:
        try:
            _regex(pattern)
        except Exception as error:
            reason = error.args[0] if error.args else error
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            yield Problem(
                path, _short(f"{pattern!r} is not a supported regular expression: {reason}")
            )


def _references(schema: object) -> Iterator[Problem]:
    """Each local reference must name a part of the document."""
    resolver = _registry().resolver_with_root(DRAFT202012.create_resource(schema))
    for path, item in _objects(schema):
        for key in _REFERENCES:
            reference = item.get(key)
            if not isinstance(reference, str) or not reference.startswith("#"):
                continue
            try:
                resolver.lookup(reference)
            except Exception:  # PointerToNowhere, NoSuchAnchor, and a pointer into a string
                yield Problem((*path, key), f"{key} {reference!r} names nothing in this schema")


def _cycles(schema: object) -> list[Problem]:
    """A reference that leads back to itself without descending into the value never ends."""
    anchors: dict[str, Path] = {}
    for path, item in _objects(schema):
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(item.get(key), str):
                anchors.setdefault(item[key], path)

    def targets(path: Path, item: Mapping[str, Any]) -> Iterator[Path]:
        for key in _REFERENCES:
            reference = item.get(key)
            if isinstance(reference, str):
                target = _target(schema, reference[1:], anchors)
                if target is not None:
                    yield target
        for key in _IN_PLACE_ONE:
            if isinstance(item.get(key), Mapping):
                yield (*path, key)
        for key in _IN_PLACE_MANY:
            if isinstance(item.get(key), list):
                yield from ((*path, key, index) for index in range(len(item[key])))

    nodes = dict(_objects(schema))
    state: dict[Path, int] = {}  # 1: on the current path, 2: done
    for start in nodes:
        if state.get(start):
            continue
        state[start] = 1
        stack: list[tuple[Path, Iterator[Path]]] = [(start, targets(start, nodes[start]))]
        while stack:
            node, successors = stack[-1]
            following = next(successors, None)
            if following is None:
                state[node] = 2
                stack.pop()
            elif following in nodes and state.get(following) == 1:
                return [
                    Problem(node, "references loop back here without descending into the value")
                ]
            elif following in nodes and not state.get(following):
                state[following] = 1
                stack.append((following, targets(following, nodes[following])))
    return []


def _target(schema: object, fragment: str, anchors: Mapping[str, Path]) -> Path | None:
    """The path a local reference names, read as referencing reads a JSON pointer."""
    if not fragment.startswith("/"):
        return anchors.get(fragment) if fragment else ()
    path: list[str | int] = []
    here = schema
    for part in unquote(fragment)[1:].split("/"):
        if isinstance(here, list) and part.isdigit() and int(part) < len(here):
            path.append(int(part))
            here = here[int(part)]
        elif isinstance(here, Mapping) and part.replace("~1", "/").replace("~0", "~") in here:
            path.append(part.replace("~1", "/").replace("~0", "~"))
            here = here[path[-1]]
        else:
            return None
    return tuple(path)


# --- run time -----------------------------------------------------------------------------


class _OverBudget(Exception):
    pass


_BUDGET: ContextVar[list[int]] = ContextVar("schema_budget")


def _no_retrieval(uri: str) -> Resource[Any]:
    raise LookupError(f"{uri!r} is outside the schema; nothing is fetched")


@lru_cache(maxsize=1)
def _registry() -> Registry[Any]:
    return Registry(retrieve=_no_retrieval)  # type: ignore[call-arg]


@lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    """RE2: linear in the text, whatever the pattern; memory capped per expression."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 256 * 1024  # ample for real patterns; compiling never takes long
    return re2.compile(pattern, options)


Keyword = Callable[[Validator, Any, Any, Mapping[str, Any]], Iterator[ValidationError] | None]


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and _regex(pattern).search(instance) is None:
        yield ValidationError(f"{_short(repr(instance))} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, Mapping) or not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        for key, item in instance.items():
            if regex.search(key) is not None:
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
            yield ValidationError(f"{_short(repr(instance))} has non-unique elements")
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
        compiled = problems or TenantValidator(json.loads(text), registry=_registry())
        _CACHE.put(digest, compiled)
    return compiled
