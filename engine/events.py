"""Appending to and reading from the event log, always within the session's tenant.

A transaction that appends events is marked; once it commits, the listeners registered
for its database with `on_commit` are called (live streams wake up on it, or send the
wake-up to other processes). Nothing is called for a transaction that rolls back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, Engine, Row, Table, event, false, or_, select
from sqlalchemy import insert as sa_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from engine.rows import insert_all
from engine.topics import NOTIFICATION, Topics
from foundation.database import Database
from persistence.models import Event
from tenancy.scoping import TenantScopedSession, session_tenant

WRITTEN: Final = "wfe.events_written"
"""`Session.info` key: the transaction appended events."""
TRANSACTION_SCOPED: Final = "wfe.transaction."
"""Prefix of `Session.info` keys that hooks leave for one transaction: gone when it ends."""

Listener = Callable[[dict[str, Any]], None]
"""Called after a commit with the session's `info` (what `Preparer`s left there)."""
Preparer = Callable[[Session], None]
"""Called just before a commit, inside the transaction; may add a statement to it."""

_listeners: WeakKeyDictionary[Engine, tuple[Listener, ...]] = WeakKeyDictionary()
_preparers: WeakKeyDictionary[Engine, tuple[Preparer, ...]] = WeakKeyDictionary()
_lock = threading.Lock()


EVENTS: Final[Table] = Event.__table__  # type: ignore[assignment]


NewEvent = dict[str, Any]
"""An `events` row's values, to insert with the transaction's other writes (`insert`)."""


def row(
    event_type: str,
    payload: dict[str, Any],
    *,
    workflow_id: str | None = None,
    execution_id: str | None = None,
) -> NewEvent:
    return {
        "type": event_type,
        "payload": payload,
        "workflow_id": workflow_id,
        "execution_id": execution_id,
    }


async def insert(session: AsyncSession, rows: Sequence[NewEvent]) -> None:
    """Add events in the caller's transaction (one statement), so they commit with the
    state change they tell of."""
    if not rows:
        return
    tenant = session_tenant(session.sync_session)
    await insert_all(session, EVENTS, [{**values, "tenant_id": tenant} for values in rows])
    session.info[WRITTEN] = True


async def append(
    session: AsyncSession,
    event_type: str,
    payload: dict[str, Any],
    *,
    workflow_id: str | None = None,
    execution_id: str | None = None,
) -> Event:
    """Add one event in the caller's transaction; it comes back with its id."""
    values = row(event_type, payload, workflow_id=workflow_id, execution_id=execution_id)
    values["tenant_id"] = session_tenant(session.sync_session)
    stored = (
        await session.execute(
            sa_insert(EVENTS).values(values).returning(EVENTS.c.id, EVENTS.c.created_at)
        )
    ).one()
    session.info[WRITTEN] = True
    return Event(**values, id=stored.id, created_at=stored.created_at)


def record(
    session: AsyncSession,
    event_type: str,
    payload: dict[str, Any],
    *,
    workflow_id: str | None = None,
    execution_id: str | None = None,
) -> Event:
    """As `append`, but written with the session's next flush (its id comes then)."""
    event = Event(
        type=event_type, payload=payload, workflow_id=workflow_id, execution_id=execution_id
    )
    session.add(event)
    session.info[WRITTEN] = True
    return event


async def read_after(
    session: AsyncSession,
    after_id: int = 0,
    *,
    workflow_ids: Sequence[str] = (),
    execution_ids: Sequence[str] = (),
    limit: int = 500,
) -> Sequence[Row[Any]]:
    """Events with id > `after_id`, oldest first, optionally only for the given topics."""
    c = EVENTS.c
    statement = select(EVENTS).where(c.id > after_id).order_by(c.id).limit(limit)
    topics = []
    if workflow_ids:
        topics.append(c.workflow_id.in_(workflow_ids))
    if execution_ids:
        topics.append(c.execution_id.in_(execution_ids))
    if topics:
        statement = statement.where(or_(*topics))
    return (await session.execute(statement)).all()


async def read_topics(
    session: AsyncSession, topics: Topics, after_id: int, upto_id: int, limit: int
) -> Sequence[Row[Any]]:
    """The tenant's events of `topics` with `after_id` < id <= `upto_id`, oldest first."""
    statement = (
        select(EVENTS)
        .where(EVENTS.c.id > after_id, EVENTS.c.id <= upto_id, _covered_by(topics))
        .order_by(EVENTS.c.id)
        .limit(limit)
    )
    return (await session.execute(statement)).all()


def _covered_by(topics: Topics) -> ColumnElement[bool]:
    """`Topics.matches` as SQL (each branch served by an index on tenant, key and id)."""
    c = EVENTS.c
    branches: list[ColumnElement[bool]] = []
    if topics.all_executions:
        branches.append(c.execution_id.is_not(None))
    elif topics.executions:
        branches.append(c.execution_id.in_(sorted(topics.executions)))
    if topics.all_workflows:
        branches.append(c.execution_id.is_(None) & (c.type != NOTIFICATION))
    elif topics.workflows:
        branches.append(c.execution_id.is_(None) & c.workflow_id.in_(sorted(topics.workflows)))
    if topics.recipient is not None:
        # Notifications carry no workflow or execution key: no other branch takes them.
        branches.append(
            (c.type == NOTIFICATION) & (c.payload["user_id"].as_string() == topics.recipient)
        )
    return or_(*branches) if branches else false()


def on_commit(database: Database[Any], listener: Listener) -> Callable[[], None]:
    """Call `listener(info)` after every commit on `database` of a transaction that appended
    events.

    It runs in the committing thread, right after the commit: it must be quick and must
    not block (set a flag, schedule a callback). Returns the function that removes it.
    """
    return _register(_listeners, database, listener)


def before_commit(database: Database[Any], preparer: Preparer) -> Callable[[], None]:
    """Call `preparer(session)` just before each commit on `database` of a transaction
    that appended events, inside that transaction. Returns the function that removes it."""
    return _register(_preparers, database, preparer)


def _register(
    registry: WeakKeyDictionary[Engine, tuple[Any, ...]], database: Database[Any], hook: Any
) -> Callable[[], None]:
    engine = database.engine.sync_engine
    with _lock:
        registry[engine] = (*registry.get(engine, ()), hook)

    def remove() -> None:
        with _lock:
            registry[engine] = tuple(x for x in registry.get(engine, ()) if x is not hook)

    return remove


@event.listens_for(TenantScopedSession, "before_commit")
def _committing(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's release: the transaction goes on
    bind = session.bind
    if session.info.get(WRITTEN) and isinstance(bind, Engine):
        for preparer in _preparers.get(bind, ()):
            preparer(session)


@event.listens_for(TenantScopedSession, "after_commit")
def _committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's release: what it wrote commits with the transaction
    if session.info.pop(WRITTEN, False):
        bind = session.bind
        for listener in _listeners.get(bind, ()) if isinstance(bind, Engine) else ():
            listener(session.info)
    _forget_transaction(session)


@event.listens_for(TenantScopedSession, "after_rollback")
def _rolled_back(session: Session) -> None:
    """A savepoint rolled back keeps the mark of events written before it (a wake-up too
    many costs a read; one too few leaves a stream waiting), and forgets what the hooks
    left, since the locks it took are released with it."""
    if not session.in_nested_transaction():
        session.info.pop(WRITTEN, None)
    _forget_transaction(session)


def _forget_transaction(session: Session) -> None:
    for key in [key for key in session.info if str(key).startswith(TRANSACTION_SCOPED)]:
        del session.info[key]
