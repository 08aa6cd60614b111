"""SQL that sets paths of a stored JSON document in place (`jsonb_set` on PostgreSQL,
`json_set` on SQLite), so a step's entry of a long execution's `steps` record and its
output are written without writing either document back whole (`engine.rows`).

The SQL depends only on how many paths are set, not on which or to what: paths and
values are bound parameters named after `prefix`, so one UPDATE built for a shape of
change serves every row changed that way (`engine.executions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import JSON, ColumnElement, Text, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

Path = tuple[str | int, ...]
"""Keys and list positions from a document's root."""

SQLITE_PATHS_PER_CALL: Final = 50
"""SQLite takes at most 127 arguments per function call: longer patches nest calls."""

MOST_PATHS: Final = 80
"""Paths set in one UPDATE at most; past it the document is written whole. Each path nests
one more `jsonb_set`, and statement building recurses through the nesting: a transaction
that runs a chain of inline steps (at most `engine.engine.CHAIN_STEPS`, 64) stays under it
(with `fewest` folding a loop's many changes into one)."""


def fewest(paths: list[tuple[Path, Any]], document: Mapping[str, Any]) -> list[tuple[Path, Any]]:
    """`paths` with every top-level key set at more than one place inside it set whole instead
    (its value as it is now in `document`): fewer paths, the same result."""
    inside: dict[str, int] = {}
    for path, _ in paths:
        if len(path) > 1:
            inside[str(path[0])] = inside.get(str(path[0]), 0) + 1
    crowded = [key for key, count in inside.items() if count > 1 and key in document]
    if not crowded:
        return paths
    kept = [(path, value) for path, value in paths if str(path[0]) not in crowded]
    return kept + [((key,), document[key]) for key in crowded]


def set_paths(column: Any, count: int, prefix: str, postgres: bool) -> ColumnElement[Any]:
    """`column` with `count` paths set, each path and value a parameter (`parameters`)."""
    if postgres:
        value: ColumnElement[Any] = column
        for number in range(count):
            value = func.jsonb_set(
                value,
                bindparam(f"{prefix}_path_{number}", type_=ARRAY(Text)),
                bindparam(f"{prefix}_value_{number}", type_=JSONB),
                type_=JSONB,
            )
        return value
    value = column
    for start in range(0, count, SQLITE_PATHS_PER_CALL):
        arguments: list[Any] = []
        for number in range(start, min(start + SQLITE_PATHS_PER_CALL, count)):
            arguments += [
                bindparam(f"{prefix}_path_{number}", type_=Text),
                func.json(bindparam(f"{prefix}_value_{number}", type_=JSON)),
            ]
        value = func.json_set(value, *arguments, type_=JSON)
    return value


def parameters(paths: list[tuple[Path, Any]], prefix: str, postgres: bool) -> dict[str, Any]:
    """The parameters of `set_paths(column, len(paths), prefix, postgres)` for `paths`."""
    bound: dict[str, Any] = {}
    for number, (path, value) in enumerate(paths):
        bound[f"{prefix}_path_{number}"] = (
            [str(key) for key in path] if postgres else _sqlite_path(path)
        )
        bound[f"{prefix}_value_{number}"] = value
    return bound


def _sqlite_path(path: Path) -> str:
    """`$."step_list"[3]`, `$."step-id"` (step ids never hold a double quote)."""
    return "$" + "".join(f"[{key}]" if isinstance(key, int) else f'."{key}"' for key in path)
