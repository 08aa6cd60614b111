"""A step writes only what it changes of its execution's documents: its entry of the seed's
`steps` record and its own output (`engine.patches`), never either document whole, so a
step at the end of a long execution writes no more than one at its start."""

from __future__ import annotations

import re
from typing import Any

from grpc import aio
from sqlalchemy import event

from engine.engine import AttemptKey, Engine
from engine.tools import ToolRegistry
from service.executions.service import ExecutionService
from tenancy.context import CallIdentity, TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, server_settings
from tests.engine.test_chains import long_chain
from tests.engine.test_recovery import LostPublisher
from tests.execution_helpers import active_workflow, wait_until
from wfe.v1 import execution_pb2

COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
TRANSFORMS = 80  # more than one chain's worth, and more paths than one SQLite call takes

UPDATE_EXECUTIONS = re.compile(r"^\s*UPDATE executions SET", re.IGNORECASE)
PATCHED = re.compile(
    r"\b(steps|outputs)=(json_set\(|jsonb_set\(|\(executions\.outputs \|\| )", re.IGNORECASE
)
"""Set path by path, or (outputs on PostgreSQL) whole steps' outputs merged in with `||`."""
WRITTEN = re.compile(r"\b(steps|outputs)=", re.IGNORECASE)


async def test_a_long_execution_patches_its_steps_record_and_outputs_and_never_writes_them_whole(
    channel: aio.Channel, new_tenant: NewTenant, database: TenantDatabase
) -> None:
    tenant = TenantId(await new_tenant("enterprise"))
    workflow_id = await active_workflow(channel, tenant, long_chain(TRANSFORMS))
    publisher = LostPublisher()  # the steps run here, where their statements can be seen
    executions = ExecutionService(database, server_settings(), publisher)
    caller = CallIdentity(tenant, "user-1", frozenset())
    execution_id = (await executions.start(caller, workflow_id, {"n": 7})).id
    engine = Engine(database, ToolRegistry(server_settings()), server_settings())
    updates: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if UPDATE_EXECUTIONS.match(statement):
            updates.append(statement)

    sync_engine = database.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        due = [
            AttemptKey(ref.tenant_id, execution_id, ref.step_id, ref.attempt)
            for ref in publisher.lost
        ]
        while due:
            refs = await engine.run_attempt(due.pop(0))
            due += [AttemptKey(r.tenant_id, r.execution_id, r.step_id, r.attempt) for r in refs]
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
        await engine.close()
    done = await wait_until(channel, tenant, execution_id, patience=30)

    assert done.status == COMPLETED
    assert dict(done.result) == {"n": 7}
    names = ["input", *(f"t{i}" for i in range(TRANSFORMS)), "done"]
    assert [s.step_id for s in done.steps] == names
    assert {s.status for s in done.steps} == {execution_pb2.STEP_STATUS_COMPLETED}
    assert all(s.attempts == 1 for s in done.steps)
    assert all(dict(s.output.struct_value) == {"n": 7} for s in done.steps[1:-1])
    whole = [
        match.group(1)
        for statement in updates
        for match in WRITTEN.finditer(statement)
        if not PATCHED.match(statement, match.start())
    ]
    patched = [match.group(1) for s in updates for match in PATCHED.finditer(s)]
    # Every step was reached, so not even the last write (which would mark any step never
    # reached as skipped) replaces the record whole.
    assert whole == [], updates
    assert patched.count("outputs") >= 2 and patched.count("steps") >= 2, updates
