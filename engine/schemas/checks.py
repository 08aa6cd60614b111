"""Save time: why a tenant's JSON Schema may not be stored as an input schema.

Beyond the Draft 2020-12 meta-schema: bounded size and depth, finite numbers, references
inside the document that resolve and never loop, one dialect at the root, and patterns RE2
accepts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

from engine.schemas.problems import (
    DIALECTS,
    IN_PLACE_MANY,
    IN_PLACE_ONE,
    MAX_PATTERNS,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    REFERENCES,
    Path,
    Problem,
    order,
    regex,
    registry,
    short,
)


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
        return [Problem((), short(f"the schema is not JSON: {error}"))]
    if size > MAX_SCHEMA_BYTES:
        return [Problem((), f"the schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are allowed")]
    problems = _meta(schema)
    if problems:
        return problems
    problems = [*_keywords(schema), *_references(schema)]
    return problems or _cycles(schema)


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
        Problem(tuple(e.absolute_path), short(e.message)) for e in _META.iter_errors(schema)
    ]
    return sorted(problems, key=lambda problem: [order(part) for part in problem.path])[:20]


def _keywords(schema: object) -> Iterator[Problem]:
    for path, item in _objects(schema):
        for key in REFERENCES:
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
            regex(pattern)
        except Exception as error:
            reason = error.args[0] if error.args else error
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            yield Problem(
                path, short(f"{pattern!r} is not a supported regular expression: {reason}")
            )


def _references(schema: object) -> Iterator[Problem]:
    """Each local reference must name a part of the document."""
    resolver = registry().resolver_with_root(DRAFT202012.create_resource(schema))
    for path, item in _objects(schema):
        for key in REFERENCES:
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
        for key in REFERENCES:
            reference = item.get(key)
            if isinstance(reference, str):
                target = _target(schema, reference[1:], anchors)
                if target is not None:
                    yield target
        for key in IN_PLACE_ONE:
            if isinstance(item.get(key), Mapping):
                yield (*path, key)
        for key in IN_PLACE_MANY:
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
