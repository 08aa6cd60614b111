"""Executions for the calling tenant: start, read, list, cancel, retry and rerun.

Each change is one transaction through the engine's control operations; the step
tasks it made due are published after that transaction commits (if that publish is
lost, the sweeper publishes them later).

Checking an input against the workflow's schema can take real CPU (a tenant's schema may
fan out through `$ref`s up to the evaluation budget), so it never runs on the event loop
inside that transaction: a start or rerun whose definition has an input schema reads it,
leaves the transaction, checks the input in `offload`'s workers and then does the work,
told the input is checked. A transaction is never held open while the check runs. The
definition a start last read is kept, so the next start of that workflow checks its input
first and, when the version is still the one it checked, needs one transaction, not two.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from engine import attempts as attempt_rows
from engine import control, traces, webhooks
from engine import executions as repository
from engine.dispatch import Publisher
from engine.executions import Filter
from engine.rows import AttemptRow, ExecutionRow
from engine.sizes import check_input_size
from engine.units import Unit, open_unit, timing_of
from foundation.errors import ExecutionStateConflict, FieldViolation, InvalidInput
from foundation.settings import Settings
from service import offload
from service.executions.batching import GroupCommit
from service.idempotency import create_once
from service.workflows import service as workflows
from tenancy import CallIdentity, TenantId
from tenancy.database import TenantDatabase
from tiers import TenantPlan

__all__ = ["ExecutionService", "Filter"]

Made = Callable[[Unit], Awaitable[ExecutionRow]]


class _CheckFirst(Exception):
    """Leaves a unit of work whose input must be checked off the loop before it is done."""

    def __init__(self, definition: Mapping[str, Any], value: Mapping[str, Any], key: int) -> None:
        super().__init__("the input is checked before the work is done")
        self.definition, self.value, self.key = definition, value, key


@dataclass(slots=True)
class _Checked:
    """What one call has checked so far: the keys (workflow versions) its input satisfies,
    and how many checks it has asked for."""

    keys: set[int] = field(default_factory=set)
    rounds: int = 0
    size: int | None = None
    """The input's encoded size, when the caller measured it (small ones are checked here)."""

    def covers(self, key: int) -> bool:
        return key in self.keys


async def _check(
    definition: Mapping[str, Any], value: Mapping[str, Any], size: int | None, field: str
) -> None:
    """`control.check_input`: right here when it is sure to be cheap, else off the loop."""
    if not control.check_input_quickly(definition, value, size, field):
        await offload.run(control.check_input, definition, value, field)


MAX_CHECKS: Final = 2
"""Checks off the loop one start asks for; past them (its workflow changed under it each
time) the version it finally reads is checked inline, as a rare race."""


class _RecentDefinitions:
    """The definition (with an input schema) each workflow had when this process last
    started it, by tenant and workflow; the least recently used go first."""

    CAPACITY: Final = 256

    def __init__(self) -> None:
        self._known: OrderedDict[tuple[TenantId, str], tuple[int, Mapping[str, Any]]] = (
            OrderedDict()
        )

    def get(self, key: tuple[TenantId, str]) -> tuple[int, Mapping[str, Any]] | None:
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
        return known

    def remember(
        self, key: tuple[TenantId, str], version: int, definition: Mapping[str, Any]
    ) -> None:
        self._known[key] = (version, definition)
        self._known.move_to_end(key)
        while len(self._known) > self.CAPACITY:
            self._known.popitem(last=False)

    def forget(self, key: tuple[TenantId, str]) -> None:
        self._known.pop(key, None)


class ExecutionService:
    """The execution operations of the API, each in its own unit of work."""

    def __init__(self, database: TenantDatabase, settings: Settings, publisher: Publisher) -> None:
        self._database = database
        self._timing = timing_of(settings)
        self._publisher = publisher
        self._batches = GroupCommit(database, self._timing, publisher, control.batch_ledger)
        self._schemas = _RecentDefinitions()

    async def start(
        self,
        caller: CallIdentity,
        workflow_id: str,
        execution_input: dict[str, Any],
        request_id: str = "",
        input_size: int | None = None,
    ) -> ExecutionRow:
        """Start an active workflow's current version; with a known `request_id`, that execution.

        `input_size`: the input's `encoded_size`, when measured off the loop already.
        """
        checked = _Checked(size=input_size)
        recent = (caller.tenant_id, workflow_id)
        await self._check_against_recent(recent, execution_input, checked)

        async def work(unit: Unit) -> ExecutionRow:
            workflow = await workflows.get(unit.session, workflow_id)
            if workflow.status != workflows.Status.ACTIVE:
                raise ExecutionStateConflict(
                    f"workflow {workflow_id!r} is {workflow.status}; only active workflows run",
                    metadata={"workflow_id": workflow_id, "status": workflow.status},
                )
            if not control.has_input_schema(workflow.definition):
                self._schemas.forget(recent)
            elif not checked.covers(workflow.version) and checked.rounds < MAX_CHECKS:
                self._schemas.remember(recent, workflow.version, workflow.definition)
                check_input_size(unit.plan, execution_input, "input", input_size)
                raise _CheckFirst(workflow.definition, execution_input, workflow.version)
            return await control.start(
                unit,
                caller.subject,
                workflow.id,
                workflow.version,
                workflow.definition,
                execution_input,
                request_id,
                # A version saved since the check (a rare race) is checked here, inline.
                input_checked=checked.covers(workflow.version),
                input_size=input_size,
            )

        return await self._create_checked(caller.tenant_id, request_id, work, checked, "input")

    async def _check_against_recent(
        self, recent: tuple[TenantId, str], value: dict[str, Any], checked: _Checked
    ) -> None:
        """Check the input against the definition this process last saw, before any
        transaction: when it is still the workflow's, the start then needs one transaction
        instead of two. A refusal here proves nothing (the workflow may have changed since):
        the start goes on and is checked against what it reads."""
        known = self._schemas.get(recent)
        if known is None:
            return
        version, definition = known
        try:
            await _check(definition, value, checked.size, "input")
        except InvalidInput:
            return
        checked.keys.add(version)

    async def get(self, tenant: TenantId, execution_id: str) -> ExecutionRow:
        async with open_unit(self._database, tenant, self._timing) as unit:
            return await control.get(unit, execution_id)

    async def snapshot(self, tenant: TenantId, execution_id: str) -> tuple[ExecutionRow, int, bool]:
        """The execution, the id of its last event (later ones are changes it does not show)
        and whether it is finished."""
        async with open_unit(self._database, tenant, self._timing) as unit:
            row, last_event_id = await control.snapshot(unit, execution_id)
        return row, last_event_id, control.finished(row)

    async def list_page(
        self, tenant: TenantId, where: Filter, *, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[ExecutionRow]:
        """Newest first; `after` is the (created_at, id) of the previous page's last row."""
        async with open_unit(self._database, tenant, self._timing) as unit:
            return await repository.list_page(unit.session, where, after=after, limit=limit)

    async def cancel(self, caller: CallIdentity, execution_id: str, reason: str) -> ExecutionRow:
        return await self._change(
            caller.tenant_id,
            lambda unit: control.cancel(unit, caller.subject, execution_id, reason),
        )

    async def test_execute(
        self,
        caller: CallIdentity,
        workflow_id: str,
        inline: dict[str, Any] | None,
        execution_input: dict[str, Any],
        fixtures: dict[str, Any],
    ) -> tuple[ExecutionRow, TenantPlan]:
        """Start a test run of a saved workflow (its latest version, draft or not) or of an
        inline definition (validated first), with `fixtures` in place of its steps' calls.

        The definition and the input are checked away from any transaction; the start is
        one transaction, which takes a slot but counts nothing against the day.
        """
        async with open_unit(self._database, caller.tenant_id, self._timing) as unit:
            plan = unit.plan
            saved = await workflows.get(unit.session, workflow_id) if workflow_id else None
        if saved is not None:
            source_id, version, definition = saved.id, saved.version, dict(saved.definition)
        elif inline is not None:
            source_id, version = None, 0
            definition = await workflows.check_definition(inline, plan)
        else:
            raise InvalidInput(
                "name a saved workflow or give an inline one",
                violations=[FieldViolation("workflow_id", "a workflow id, or `workflow`")],
            )
        check_input_size(plan, execution_input, "input")
        await _check(definition, execution_input, None, "input")
        run = traces.with_fixtures(definition, fixtures, plan)
        row = await self._change(
            caller.tenant_id,
            lambda unit: control.start(
                unit,
                caller.subject,
                source_id,
                version,
                run,
                execution_input,
                input_checked=True,
                test=True,
            ),
        )
        return row, plan

    async def attempts(
        self, tenant: TenantId, execution_id: str
    ) -> tuple[ExecutionRow, list[AttemptRow]]:
        """The execution and every attempt of its steps."""
        async with open_unit(self._database, tenant, self._timing) as unit:
            row = await control.get(unit, execution_id)
            return row, await attempt_rows.of_execution(unit.session, execution_id)

    async def complete_webhook(
        self, caller: CallIdentity, token: str, payload: dict[str, Any]
    ) -> ExecutionRow:
        """Record a webhook step's callback: its payload is the step's output."""
        return await self._change(
            caller.tenant_id, lambda unit: webhooks.complete(unit, token, payload)
        )

    async def retry(self, caller: CallIdentity, execution_id: str) -> ExecutionRow:
        return await self._change(
            caller.tenant_id, lambda unit: control.retry(unit, caller.subject, execution_id)
        )

    async def rerun(
        self,
        caller: CallIdentity,
        execution_id: str,
        from_step: str,
        input_patch: dict[str, Any],
        request_id: str = "",
    ) -> ExecutionRow:
        """A new execution from `from_step` of a finished one; with a known `request_id`, that."""
        checked = _Checked()  # a finished execution's definition and input never change: key 0

        async def work(unit: Unit) -> ExecutionRow:
            if not checked.keys:
                planned = await control.plan_rerun(unit, execution_id, from_step, input_patch)
                if control.has_input_schema(planned.original.definition):
                    raise _CheckFirst(planned.original.definition, planned.new_input, 0)
            return await control.rerun(
                unit,
                caller.subject,
                execution_id,
                from_step,
                input_patch,
                request_id,
                input_checked=checked.covers(0),
            )

        return await self._create_checked(
            caller.tenant_id, request_id, work, checked, "input_patch"
        )

    async def _create_checked(
        self, tenant: TenantId, request_id: str, work: Made, checked: _Checked, field: str
    ) -> ExecutionRow:
        """`_create`; when `work` asks for its input to be checked first, that, then again
        (`work` asks at most MAX_CHECKS times)."""
        while True:
            try:
                return await self._create(tenant, request_id, work)
            except _CheckFirst as first:
                await _check(first.definition, first.value, checked.size, field)
                checked.keys.add(first.key)
                checked.rounds += 1

    async def _change(
        self, tenant: TenantId, work: Callable[[Unit], Awaitable[ExecutionRow]]
    ) -> ExecutionRow:
        """Run `work` in one transaction; publish what it made due once it has committed."""
        async with open_unit(self._database, tenant, self._timing) as unit:
            execution = await work(unit)
        self._publisher.publish(unit.publish)
        return execution

    async def _create(
        self, tenant: TenantId, request_id: str, work: Callable[[Unit], Awaitable[ExecutionRow]]
    ) -> ExecutionRow:
        """`work`, once per request id: a repeated id answers with what the first call made.

        Concurrent creates of the tenant share a transaction (`batching`).
        """

        async def started(unit: Unit) -> ExecutionRow:
            if request_id:
                found = await repository.get_by_request(unit.session, request_id)
                if found is not None:
                    return found
            return await work(unit)

        async def find() -> ExecutionRow | None:
            async with self._database.transaction(tenant) as session:
                return await repository.get_by_request(session, request_id)

        return await create_once(request_id, lambda: self._batches.run(tenant, started), find)
