"""Rows the engine reads and changes in a transaction, as plain objects that remember what
changed, so that the transaction writes each row once, in one Core statement
(`engine.units.flush`), and never through the ORM's unit of work.

An execution's `steps` record and its `outputs` are the two documents that grow with the
execution. A step changes one entry of the record and adds one output, so those are kept
as patches (`patch_entry`, `patch_output`) and written path by path (`engine.patches`),
not whole; a document assigned whole (a retry's reset, a terminal state's skipped steps)
is written whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Final

from sqlalchemy import ColumnElement, Insert, Table, bindparam, insert, or_
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import AttemptStatus, ExecutionStatus
from tenancy.scoping import prebuilt


def keyed_by_attempt(table: Table) -> tuple[ColumnElement[bool], ...]:
    """WHERE one attempt's row of `table` (step_attempts, dispatch_queue): its key bound as
    `attempt_key` names it. Not the columns' own names, which an UPDATE reserves."""
    return (
        table.c.execution_id == bindparam("key_execution"),
        table.c.step_id == bindparam("key_step"),
        table.c.attempt == bindparam("key_attempt"),
    )


def attempt_key(execution_id: str, step_id: str, attempt: int) -> dict[str, Any]:
    """The parameters of `keyed_by_attempt`."""
    return {"key_execution": execution_id, "key_step": step_id, "key_attempt": attempt}


def instances_named(table: Table, names: list[str], markers: list[str]) -> ColumnElement[bool]:
    """The rows of `table` (keyed by attempt) of the instances `names`, or of any instance
    whose scope starts with one of `markers` (what follows its `@`)."""
    matches = [table.c.step_id.in_(names)]
    for marker in markers:
        escaped = marker.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches.append(table.c.step_id.like(f"%@{escaped}%", escape="\\"))
    return or_(*matches)


MANY_VALUES_ROWS: Final = 16
"""Rows up to which an insert is one multi-row VALUES statement, built once per shape."""

_many_values: dict[tuple[str, tuple[str, ...], int], Insert] = {}


async def insert_all(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert `rows` (each with the same columns) in one statement and one round trip.

    Up to `MANY_VALUES_ROWS` rows go as one multi-row VALUES with bound parameters, built
    once per table, columns and row count (so confined and compiled once): psycopg would
    send a list of parameter sets through its pipeline, which costs more than the rows.
    """
    if not rows:
        return
    names = tuple(rows[0])
    if len(rows) > MANY_VALUES_ROWS:
        await session.execute(insert(table), [dict(row) for row in rows])
        return
    shape = (table.name, names, len(rows))
    statement = _many_values.get(shape)
    if statement is None:
        statement = insert(table).values(
            [
                {name: bindparam(f"r{at}_{name}", type_=table.c[name].type) for name in names}
                for at in range(len(rows))
            ]
        )
        if len(_many_values) < 4096:
            _many_values[shape] = prebuilt(statement)
    bound = {f"r{at}_{name}": row[name] for at, row in enumerate(rows) for name in names}
    await session.execute(statement, bound)


class Tracked:
    """Attribute assignments after loading are remembered in `changed` until written."""

    __slots__ = ("changed", "stored")
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    COMPARED: ClassVar[frozenset[str]] = frozenset()
    """Columns assigned an equal value stay unchanged (documents copied and changed)."""

    changed: set[str]
    stored: bool
    """Whether the row exists in the database (else its first write inserts it)."""

    def __init__(self, values: Mapping[Any, Any], *, stored: bool) -> None:
        for name in self.COLUMNS:
            object.__setattr__(self, name, values.get(name))
        object.__setattr__(self, "changed", set())
        object.__setattr__(self, "stored", stored)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.COMPARED and getattr(self, name) == value:
            object.__setattr__(self, name, value)  # equal: nothing to write
            return
        object.__setattr__(self, name, value)
        self.changed.add(name)

    def values(self, names: tuple[str, ...] | set[str] | None = None) -> dict[str, Any]:
        """The named columns (all by default) as a statement's parameters."""
        return {name: getattr(self, name) for name in names or self.COLUMNS}

    def written(self) -> None:
        """The row was just written as it stands."""
        object.__setattr__(self, "stored", True)
        self.changed.clear()


class ExecutionRow(Tracked):
    """One `executions` row (see `persistence.models.Execution` for the columns' meaning)."""

    COLUMNS = (
        "id",
        "tenant_id",
        "workflow_id",
        "workflow_version",
        "definition",
        "input",
        "status",
        "steps",
        "outputs",
        "current_step",
        "resume_from",
        "progress",
        "error",
        "error_detail",
        "result",
        "holds_slot",
        "created_at",
        "created_by",
        "started_at",
        "completed_at",
        "deadline_at",
        "updated_at",
        "request_id",
        "rerun_of",
        "rerun_from_step",
        "cancelled_by",
        "test",
        "trace_parent",
    )
    __slots__ = (*COLUMNS, "entry_patches", "current_patch", "output_patches")
    COMPARED = frozenset({"steps", "outputs"})

    id: str
    tenant_id: str
    workflow_id: str | None
    workflow_version: int
    definition: dict[str, Any]
    input: dict[str, Any]
    status: ExecutionStatus
    steps: dict[str, Any]
    outputs: dict[str, Any]
    current_step: str | None
    resume_from: str | None
    progress: float
    error: dict[str, Any] | None
    error_detail: str | None
    result: dict[str, Any] | None
    holds_slot: bool
    created_at: datetime
    created_by: str
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    updated_at: datetime
    request_id: str | None
    rerun_of: str | None
    rerun_from_step: str | None
    cancelled_by: str | None
    test: bool
    trace_parent: str | None

    entry_patches: dict[int, dict[str, Any]]
    """0-based position in `step_list` -> the entry as it is now, not written yet."""
    current_patch: int | None
    output_patches: dict[tuple[str | int, ...], Any]
    """Paths of the outputs set since the row was read, in the order to apply them."""

    def __init__(self, values: Mapping[Any, Any], *, stored: bool) -> None:
        super().__init__(values, stored=stored)
        self._forget_patches()

    def patch_entry(self, steps: dict[str, Any], number: int, current: bool) -> None:
        """`steps`, the record with its entry `number` (1-based) changed, becomes the row's."""
        object.__setattr__(self, "steps", steps)
        if "steps" in self.changed or not self.stored:
            return  # written whole anyway
        self.entry_patches[number - 1] = steps["step_list"][number - 1]
        if current:
            object.__setattr__(self, "current_patch", number)

    def patch_output(self, step_id: str, output: Any) -> None:
        """The step's output is added to (or replaces its own in) the row's outputs."""
        self.patch_output_at((step_id,), output)

    def patch_output_at(self, path: tuple[str | int, ...], value: Any) -> None:
        """Set one path of the outputs (a step's whole output, or a place inside one that
        exists already: a loop's result by its index).

        The outputs are changed in place at their top (the row owns them, and a loop's
        thousandth iteration must not copy what the other 999 left there); below it, the
        containers on the path are copied, never changed: a step's output may be the very
        object another place of the outputs holds.
        """
        key, rest = path[0], path[1:]
        self.outputs[str(key)] = _set_in(self.outputs.get(str(key)), rest, value)
        if "outputs" in self.changed or not self.stored:
            return
        for pending in list(self.output_patches):
            if pending == path[: len(pending)] and pending != path:
                # A patch of an enclosing place stands: it takes the new value within it.
                self.output_patches[pending] = _get_in(self.outputs, pending)
                return
            if path == pending[: len(path)]:
                del self.output_patches[pending]  # within the new value: superseded
        self.output_patches[path] = value

    def has_patches(self) -> bool:
        return bool(self.entry_patches or self.current_patch is not None or self.output_patches)

    def written(self) -> None:
        super().written()
        self._forget_patches()

    def _forget_patches(self) -> None:
        object.__setattr__(self, "entry_patches", {})
        object.__setattr__(self, "current_patch", None)
        object.__setattr__(self, "output_patches", {})


class AttemptRow(Tracked):
    """One `step_attempts` row (see `persistence.models.StepAttempt`)."""

    COLUMNS = (
        "tenant_id",
        "execution_id",
        "step_id",
        "attempt",
        "status",
        "due_at",
        "claims",
        "started_at",
        "finished_at",
        "output",
        "error",
        "task_id",
        "trace",
    )
    __slots__ = COLUMNS

    tenant_id: str
    execution_id: str
    step_id: str
    attempt: int
    status: AttemptStatus
    due_at: datetime
    claims: int
    started_at: datetime | None
    finished_at: datetime | None
    output: Any
    error: dict[str, Any] | None
    task_id: str | None
    trace: dict[str, Any] | None


def _set_in(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of `document` with `path` set: only the containers on the path are copied."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, list) and isinstance(head, int):
        changed = list(document)
        if head == len(changed):  # one past the end appends, as jsonb_set and json_set do
            changed.append(_set_in(None, rest, value))
        else:
            changed[head] = _set_in(changed[head], rest, value)
        return changed
    changed_map = dict(document)
    changed_map[head] = _set_in(changed_map.get(head), rest, value)
    return changed_map


def _get_in(document: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        document = document[key]
    return document
