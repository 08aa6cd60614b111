"""Writing one entry of an execution's `steps` record, or one step's output, in place.

A step changes one entry of the record and adds one output; writing either document back
whole would make each step of a long execution cost more than the one before. So a
transition changes the loaded documents in memory without marking them changed, and
records what changed here; just before the session flushes, the record and the outputs
are set to SQL that changes those paths in the stored value (`jsonb_set` on PostgreSQL,
`json_set` on SQLite), merged into the same UPDATE as the row's other columns. A document
replaced whole in the same transaction (a terminal state, a retry's reset) is written
whole, and its patches dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import JSON, ColumnElement, Text, event, func, inspect, literal
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session, attributes
from sqlalchemy.orm.attributes import flag_dirty, set_committed_value

from persistence.models import Execution

Path = tuple[str | int, ...]
"""Keys and list positions from a document's root."""

SQLITE_PATHS_PER_CALL: Final = 50
"""SQLite takes at most 127 arguments per function call: longer patches nest calls."""

_PENDING: Final = "wfe.document_patches"
"""`Session.info` key: the executions with patches to write at the next flush."""


@dataclass(slots=True)
class _Patches:
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    """0-based position in `step_list` -> the entry as it is now."""
    current: int | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    steps_doc: Any = None
    outputs_doc: Any = None


def set_entry(
    session: Session, execution: Execution, steps: dict[str, Any], number: int, current: bool
) -> None:
    """`steps` (the record with entry `number`, 1-based, changed) becomes the execution's."""
    if _replaced(execution, "steps"):
        execution.steps = steps
        return
    patches = _patches_of(session, execution)
    patches.entries[number - 1] = steps["step_list"][number - 1]
    if current:
        patches.current = number
    patches.steps_doc = steps
    set_committed_value(execution, "steps", steps)


def set_output(session: Session, execution: Execution, step_id: str, output: Any) -> None:
    """The step's output is added to (or replaced in) the execution's outputs."""
    outputs = {**execution.outputs, step_id: output}
    if _replaced(execution, "outputs"):
        execution.outputs = outputs
        return
    patches = _patches_of(session, execution)
    patches.outputs[step_id] = output
    patches.outputs_doc = outputs
    set_committed_value(execution, "outputs", outputs)


def _replaced(execution: Execution, name: str) -> bool:
    return bool(attributes.get_history(execution, name).has_changes())


def _patches_of(session: Session, execution: Execution) -> _Patches:
    pending: dict[int, Execution] = session.info.setdefault(_PENDING, {})
    pending[id(execution)] = execution
    flag_dirty(execution)  # a flush must come even if nothing else on the row changed
    info = inspect(execution).info
    patches = info.get(_PENDING)
    if patches is None:
        patches = info[_PENDING] = _Patches()
    return patches


@event.listens_for(Session, "before_flush")
def _write_patches(session: Session, _context: Any, _instances: Any) -> None:
    pending: dict[int, Execution] | None = session.info.get(_PENDING)
    if not pending:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    for execution in pending.values():
        patches: _Patches = inspect(execution).info[_PENDING]
        if (patches.entries or patches.current) and not _replaced(execution, "steps"):
            execution.steps = _steps_patch(patches, postgres)
        if patches.outputs and not _replaced(execution, "outputs"):
            execution.outputs = _outputs_patch(patches, postgres)


@event.listens_for(Session, "after_flush_postexec")
def _keep_documents(session: Session, _context: Any) -> None:
    """The flushed SQL expired the documents: put back the values they now hold."""
    pending: dict[int, Execution] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    for execution in pending.values():
        patches: _Patches = inspect(execution).info.pop(_PENDING)
        state = inspect(execution)
        if patches.steps_doc is not None and "steps" not in state.dict:
            set_committed_value(execution, "steps", patches.steps_doc)
        if patches.outputs_doc is not None and "outputs" not in state.dict:
            set_committed_value(execution, "outputs", patches.outputs_doc)


def _steps_patch(patches: _Patches, postgres: bool) -> ColumnElement[Any]:
    paths: list[tuple[Path, Any]] = [
        (("step_list", index), entry) for index, entry in sorted(patches.entries.items())
    ]
    if patches.current is not None:
        paths.append((("current_step_number",), patches.current))
    return _set_paths(Execution.steps, paths, postgres)


def _outputs_patch(patches: _Patches, postgres: bool) -> ColumnElement[Any]:
    paths: list[tuple[Path, Any]] = [
        ((step_id,), value) for step_id, value in patches.outputs.items()
    ]
    return _set_paths(Execution.outputs, paths, postgres)


def _set_paths(column: Any, paths: list[tuple[Path, Any]], postgres: bool) -> ColumnElement[Any]:
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
