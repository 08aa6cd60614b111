"""SQL that sets paths of a stored JSON document in place (`jsonb_set` on PostgreSQL,
`json_set` on SQLite), so a step's entry of a long execution's `steps` record and its
output are written without writing either document back whole (`engine.rows`)."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import JSON, ColumnElement, Text, func, literal
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

Path = tuple[str | int, ...]
"""Keys and list positions from a document's root."""

SQLITE_PATHS_PER_CALL: Final = 50
"""SQLite takes at most 127 arguments per function call: longer patches nest calls."""


def set_paths(column: Any, paths: list[tuple[Path, Any]], postgres: bool) -> ColumnElement[Any]:
    """`column` with each path set to its value."""
    if postgres:
        value: ColumnElement[Any] = column
        for path, new in paths:
            keys = [str(key) for key in path]
            value = func.jsonb_set(
                value, literal(keys, ARRAY(Text)), literal(new, JSONB), type_=JSONB
            )
        return value
    value = column
    for start in range(0, len(paths), SQLITE_PATHS_PER_CALL):
        arguments: list[Any] = []
        for path, new in paths[start : start + SQLITE_PATHS_PER_CALL]:
            arguments += [_sqlite_path(path), func.json(literal(new, JSON))]
        value = func.json_set(value, *arguments, type_=JSON)
    return value


def _sqlite_path(path: Path) -> str:
    """`$."step_list"[3]`, `$."step-id"` (step ids never hold a double quote)."""
    return "$" + "".join(f"[{key}]" if isinstance(key, int) else f'."{key}"' for key in path)
