"""Executions for the calling tenant: start, read, list, cancel, retry and rerun.

Each change is one transaction through the engine's control operations; the step
tasks it made due are published after that transaction commits (if that publish is
lost, the sweeper publishes them later).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from engine import control
from engine import executions as repository
from engine.dispatch import Publisher
from engine.executions import Filter
from engine.units import Unit, open_unit, timing_of
from foundation.errors import ExecutionStateConflict
from foundation.settings import Settings
from persistence.models import Execution
from service.idempotency import create_once
from service.workflows import service as workflows
from tenancy import CallIdentity, TenantId
from tenancy.database import TenantDatabase

__all__ = ["ExecutionService", "Filter"]


class ExecutionService:
    """The execution operations of the API, each in its own unit of work."""

    def __init__(self, database: TenantDatabase, settings: Settings, publisher: Publisher) -> None:
        self._database = database
        self._timing = timing_of(settings)
        self._publisher = publisher

    async def start(
        self,
        caller: CallIdentity,
        workflow_id: str,
        execution_input: dict[str, Any],
        request_id: str = "",
    ) -> Execution:
        """Start an active workflow's current version; with a known `request_id`, that execution."""

        async def work(unit: Unit) -> Execution:
            workflow = await workflows.get(unit.session, workflow_id)
            if workflow.status != workflows.Status.ACTIVE:
                raise ExecutionStateConflict(
                    f"workflow {workflow_id!r} is {workflow.status}; only active workflows run",
                    metadata={"workflow_id": workflow_id, "status": workflow.status},
                )
            return await control.start(
                unit,
                caller.subject,
                workflow.id,
                workflow.version,
                workflow.definition,
                execution_input,
                request_id,
            )

        return await self._create(caller.tenant_id, request_id, work)

    async def get(self, tenant: TenantId, execution_id: str) -> Execution:
        async with open_unit(self._database, tenant, self._timing) as unit:
            return await control.get(unit, execution_id)

    async def list_page(
        self, tenant: TenantId, where: Filter, *, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Execution]:
        """Newest first; `after` is the (created_at, id) of the previous page's last row."""
        async with open_unit(self._database, tenant, self._timing) as unit:
            return await repository.list_page(unit.session, where, after=after, limit=limit)

    async def cancel(self, caller: CallIdentity, execution_id: str, reason: str) -> Execution:
        return await self._change(
            caller.tenant_id,
            lambda unit: control.cancel(unit, caller.subject, execution_id, reason),
        )

    async def retry(self, caller: CallIdentity, execution_id: str) -> Execution:
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
    ) -> Execution:
        """A new execution from `from_step` of a finished one; with a known `request_id`, that."""

        async def work(unit: Unit) -> Execution:
            return await control.rerun(
                unit, caller.subject, execution_id, from_step, input_patch, request_id
            )

        return await self._create(caller.tenant_id, request_id, work)

    async def _change(
        self, tenant: TenantId, work: Callable[[Unit], Awaitable[Execution]]
    ) -> Execution:
        """Run `work` in one transaction; publish what it made due once it has committed."""
        async with open_unit(self._database, tenant, self._timing) as unit:
            execution = await work(unit)
        self._publisher.publish(unit.publish)
        return execution

    async def _create(
        self, tenant: TenantId, request_id: str, work: Callable[[Unit], Awaitable[Execution]]
    ) -> Execution:
        """`work`, once per request id: a repeated id answers with what the first call made."""

        async def started(unit: Unit) -> Execution:
            if request_id:
                found = await repository.get_by_request(unit.session, request_id)
                if found is not None:
                    return found
            return await work(unit)

        async def find() -> Execution | None:
            async with self._database.transaction(tenant) as session:
                return await repository.get_by_request(session, request_id)

        return await create_once(request_id, lambda: self._change(tenant, started), find)
