"""The `executions` table's statements, in SQLAlchemy Core: reading, locking, inserting and
updating rows as `ExecutionRow`s. Every statement is confined to the session's tenant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from engine import patches
from engine.rows import ExecutionRow, insert_all
from persistence.models import Event, Execution, ExecutionStatus
from tenancy.scoping import prebuilt

EXECUTIONS: Final[Table] = Execution.__table__  # type: ignore[assignment]
_ALL: Final = select(EXECUTIONS)
_BY_ID: Final = prebuilt(_ALL.where(EXECUTIONS.c.id == bindparam("execution_id")))
_LOCKED: Final = prebuilt(_BY_ID.with_for_update())


def _rows(found: Sequence[Any]) -> list[ExecutionRow]:
    return [ExecutionRow(row._mapping, stored=True) for row in found]


async def _one(
    session: AsyncSession, statement: Select[Any], parameters: dict[str, Any] | None = None
) -> ExecutionRow | None:
    found = (await session.execute(statement, parameters)).first()
    return None if found is None else ExecutionRow(found._mapping, stored=True)


async def get(
    session: AsyncSession, execution_id: str, *, for_update: bool = False
) -> ExecutionRow | None:
    return await _one(session, _LOCKED if for_update else _BY_ID, {"execution_id": execution_id})


async def get_with_last_event(
    session: AsyncSession, execution_id: str
) -> tuple[ExecutionRow, int] | None:
    """The execution and the id of its last event (0: none), read in one statement.

    One statement sees one snapshot, and an execution's events are appended in the
    transactions that change it, which hold its row locked: so every event after that id
    is a change the row does not show yet, and every event up to it is one it does.
    """
    last = (
        select(func.coalesce(func.max(Event.id), 0))
        .where(Event.execution_id == EXECUTIONS.c.id)
        .correlate(EXECUTIONS)
        .scalar_subquery()
        .label("last_event_id")
    )
    found = (
        await session.execute(select(EXECUTIONS, last).where(EXECUTIONS.c.id == execution_id))
    ).first()
    if found is None:
        return None
    return ExecutionRow(found._mapping, stored=True), int(found.last_event_id)


async def get_by_request(session: AsyncSession, request_id: str) -> ExecutionRow | None:
    return await _one(session, _ALL.where(EXECUTIONS.c.request_id == request_id))


@dataclass(frozen=True, slots=True)
class Filter:
    """What ListExecutions narrows by; empty fields do not narrow."""

    workflow_id: str = ""
    statuses: tuple[ExecutionStatus, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    created_by: str = ""

    def fingerprint(self) -> str:
        """Identifies the listing, so a page token is refused under another filter."""
        return "|".join(
            [
                self.workflow_id,
                ",".join(sorted(self.statuses)),
                self.created_after.isoformat() if self.created_after else "",
                self.created_before.isoformat() if self.created_before else "",
                self.created_by,
            ]
        )


async def list_page(
    session: AsyncSession, where: Filter, *, after: tuple[datetime, str] | None, limit: int
) -> list[ExecutionRow]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    c = EXECUTIONS.c
    statement = _ALL.order_by(c.created_at.desc(), c.id.desc())
    if where.workflow_id:
        statement = statement.where(c.workflow_id == where.workflow_id)
    if where.statuses:
        statement = statement.where(c.status.in_(where.statuses))
    if where.created_after is not None:
        statement = statement.where(c.created_at >= where.created_after)
    if where.created_before is not None:
        statement = statement.where(c.created_at < where.created_before)
    if where.created_by:
        statement = statement.where(c.created_by == where.created_by)
    if after is not None:
        created_at, execution_id = after
        statement = statement.where(
            or_(
                c.created_at < created_at,
                and_(c.created_at == created_at, c.id < execution_id),
            )
        )
    return _rows((await session.execute(statement.limit(limit))).all())


async def oldest_queued(session: AsyncSession, limit: int) -> list[ExecutionRow]:
    """The tenant's longest-waiting queued executions, skipping any another transaction holds."""
    statement = (
        _ALL.where(EXECUTIONS.c.status == ExecutionStatus.QUEUED)
        .order_by(EXECUTIONS.c.created_at, EXECUTIONS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return _rows((await session.execute(statement)).all())


async def queued_before(session: AsyncSession, created_at: datetime) -> int:
    """How many of the tenant's queued executions were created before `created_at`."""
    count = await session.scalar(
        select(func.count())
        .select_from(EXECUTIONS)
        .where(
            EXECUTIONS.c.status == ExecutionStatus.QUEUED,
            EXECUTIONS.c.created_at < created_at,
        )
    )
    return int(count or 0)


async def write(session: AsyncSession, rows: Sequence[ExecutionRow]) -> None:
    """Insert the new rows and update the changed ones: each in one statement.

    A changed `steps` record or `outputs` document that was only patched is set path by
    path (`engine.patches`) in the same UPDATE.
    """
    new = [row for row in rows if not row.stored]
    if new:
        await insert_all(session, EXECUTIONS, [row.values() for row in new])
        for row in new:
            row.written()
    postgres = session.get_bind().dialect.name == "postgresql"
    for row in rows:
        if not row.changed and not row.has_patches():
            continue
        steps: list[tuple[patches.Path, Any]] = []
        if "steps" not in row.changed:
            steps = [(("step_list", at), entry) for at, entry in sorted(row.entry_patches.items())]
            if row.current_patch is not None:
                steps.append((("current_step_number",), row.current_patch))
        outputs: list[tuple[patches.Path, Any]] = []
        merged: dict[str, Any] = {}
        if "outputs" not in row.changed:
            outputs = patches.fewest(list(row.output_patches.items()), row.outputs)
            if postgres:  # whole outputs by step: one `||`, where each jsonb_set copies all
                merged = {str(path[0]): value for path, value in outputs if len(path) == 1}
                outputs = [(path, value) for path, value in outputs if len(path) > 1]
        whole = set()
        if len(steps) > patches.MOST_PATHS:
            steps, whole = [], {"steps"}
        if len(outputs) > patches.MOST_PATHS:
            outputs, whole = [], whole | {"outputs"}
        names = tuple(sorted((row.changed | whole) - {"id"}))
        bound: dict[str, Any] = {f"new_{name}": getattr(row, name) for name in names}
        bound["key_id"] = row.id
        bound |= patches.parameters(steps, "steps", postgres)
        bound |= patches.parameters(outputs, "outputs", postgres)
        if merged:
            bound["outputs_merged"] = merged
        statement = _update(names, len(steps), len(outputs), postgres, bool(merged))
        await session.execute(statement, bound)
        row.written()


_updates: dict[tuple[tuple[str, ...], int, int, bool, bool], Any] = {}
UPDATE_SHAPES_KEPT: Final = 512
"""Built UPDATEs kept, one per shape of change (columns set, paths patched)."""


def _update(
    names: tuple[str, ...], steps: int, outputs: int, postgres: bool, merged: bool = False
) -> Any:
    """The UPDATE that sets `names` (parameters `new_<name>`) and patches `steps` paths of
    the steps record and `outputs` paths of the outputs (after merging `outputs_merged`,
    whole outputs by step, when `merged`), of the row `key_id`: built once per shape, so it
    is confined and compiled once (`tenancy.scoping.prebuilt`)."""
    shape = (names, steps, outputs, postgres, merged)
    statement = _updates.get(shape)
    if statement is not None:
        return statement
    c = EXECUTIONS.c
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names}
    if steps:
        values["steps"] = patches.set_paths(c.steps, steps, "steps", postgres)
    if outputs or merged:
        base: Any = c.outputs
        if merged:
            base = c.outputs.op("||")(bindparam("outputs_merged", type_=JSONB))
        values["outputs"] = patches.set_paths(base, outputs, "outputs", postgres)
    statement = update(EXECUTIONS).where(c.id == bindparam("key_id")).values(values)
    if len(_updates) < UPDATE_SHAPES_KEPT:
        _updates[shape] = prebuilt(statement)
    return statement
