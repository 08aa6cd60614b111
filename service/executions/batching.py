"""Group commit: concurrent creates of one tenant share one transaction.

Every start takes the tenant's admission lock and its counter rows and holds them until
it commits, so one tenant's concurrent starts queue behind each other's round trips and
commits. Instead, the calls that arrive while a tenant's transaction runs wait for it
to end and then go together in the next one, each inside a savepoint: each gets its own
answer or its own error (a refused start rolls back to its savepoint and takes nothing
with it), and the batch pays one BEGIN, one lock wait and one commit. A lone call goes at
once: no timer holds it back. A batch of several takes its quota counters once
(`prepare`, a `tiers.ledger.CounterLedger`): locked and read before the first call,
written once after the last.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from engine.dispatch import Publisher, TaskRef
from engine.units import Timing, Unit, flush, open_unit, utcnow
from foundation.errors import WorkTimeout
from service.interceptors.deadline import current_deadline, expired
from tenancy import TenantId
from tenancy.database import TenantDatabase
from tiers.ledger import CounterLedger

T = TypeVar("T")

MAX_BATCH: Final = 64
"""Calls one transaction takes at most; the rest go in the next."""


@dataclass(slots=True)
class _Call(Generic[T]):
    work: Callable[[Unit], Awaitable[T]]
    answer: asyncio.Future[T]
    publish: list[TaskRef] = field(default_factory=list)
    kept: Unit | None = None
    """Its unit, once its savepoint held: what it did counts after the commit."""
    abandoned: bool = False
    """Its caller went away (a cancel) before the batch took it."""
    deadline: float | None = None
    """Its caller's deadline (`service.interceptors.deadline`): past it, it starts nothing."""

    def given_up(self) -> bool:
        return self.abandoned or self.answer.done() or expired(self.deadline)


def _retrieved(answer: asyncio.Future[Any]) -> None:
    if not answer.cancelled():
        answer.exception()


def _given_up() -> WorkTimeout:
    """What a call whose caller left (its deadline passed) is answered, if still heard."""
    return WorkTimeout("the call's deadline passed before its work was committed")


class GroupCommit:
    """Runs units of work of one tenant together, one transaction per batch."""

    def __init__(
        self,
        database: TenantDatabase,
        timing: Timing,
        publisher: Publisher,
        prepare: Callable[[Unit], Awaitable[CounterLedger]] | None = None,
    ) -> None:
        self._database = database
        self._timing = timing
        self._publisher = publisher
        self._prepare = prepare
        self._waiting: dict[TenantId, list[_Call[Any]]] = {}
        self._running: dict[TenantId, asyncio.Task[None]] = {}

    async def run(self, tenant: TenantId, work: Callable[[Unit], Awaitable[T]]) -> T:
        """`work`'s result once the transaction it ran in has committed (and what it made
        due is published); its exception if it raised, or if that transaction failed."""
        answer: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(_retrieved)  # a caller that gave up never reads it
        waiting = self._waiting.get(tenant)
        if waiting is None:
            waiting = self._waiting[tenant] = []
            ahead = self._running.get(tenant)
            leader = asyncio.create_task(self._lead(tenant, ahead))
            self._running[tenant] = leader
            leader.add_done_callback(lambda task: self._finished(tenant, task))
        call = _Call(work, answer, deadline=current_deadline())
        waiting.append(call)
        try:
            # The batch goes on if this caller gives up: the others' answers depend on it.
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            call.abandoned = True  # not taken yet: it starts nothing
            raise

    def _finished(self, tenant: TenantId, task: asyncio.Task[None]) -> None:
        if self._running.get(tenant) is task:
            del self._running[tenant]

    async def _lead(self, tenant: TenantId, ahead: asyncio.Task[None] | None) -> None:
        """Wait for the tenant's batch in progress (or one turn of the loop), then take what
        has gathered meanwhile."""
        if ahead is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait({ahead})
        else:
            await asyncio.sleep(0)
        calls = self._waiting.pop(tenant)
        try:
            for first in range(0, len(calls), MAX_BATCH):
                await self._commit(tenant, calls[first : first + MAX_BATCH])
        finally:  # stopped midway (the server shuts down): nobody is left waiting
            for call in calls:
                if not call.answer.done():
                    call.answer.cancel()

    async def _commit(self, tenant: TenantId, calls: Sequence[_Call[Any]]) -> None:
        results: list[Any] = []
        try:
            async with open_unit(self._database, tenant, self._timing) as shared:
                session = shared.session
                ledger = None
                if self._prepare is not None and len(calls) > 1:
                    ledger = await self._prepare(shared)
                for call in calls:
                    if call.given_up():  # nobody waits for it: it starts nothing
                        results.append(_given_up())
                        continue
                    unit = Unit(session, shared.plan, utcnow(), self._timing, ledger=ledger)
                    taken = ledger.mark() if ledger is not None else {}
                    try:
                        async with session.begin_nested():
                            result = await call.work(unit)
                            await flush(unit)  # in its savepoint: a refusal takes it back
                            if call.given_up():  # its caller left meanwhile: take it back
                                raise _given_up()
                            results.append(result)
                    except Exception as error:
                        results.append(error)
                        if ledger is not None:
                            ledger.restore(taken)
                    else:
                        call.publish, call.kept = unit.publish, unit
                if ledger is not None:
                    await ledger.flush()
        except BaseException as error:  # the transaction itself failed: nothing was kept
            for call in calls:
                if not call.answer.done():
                    call.answer.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        self._publisher.publish([ref for call in calls for ref in call.publish])
        for call in calls:
            if call.kept is not None:
                call.kept.tally.emit(call.kept.plan)
        for call, result in zip(calls, results, strict=True):
            if call.answer.done():
                continue
            if isinstance(result, Exception):
                call.answer.set_exception(result)
            else:
                call.answer.set_result(result)
