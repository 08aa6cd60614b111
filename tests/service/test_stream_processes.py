"""Live streams across processes (PostgreSQL): `wfe worker` processes commit the events, and
subscribers on any server process receive each of them once, in order, across reconnects
and a server's SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from persistence.models import Event
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import error_info, require
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import broker_unavailable_reason, broker_url
from tests.execution_helpers import active_workflow, start
from tests.fault_harness import create_tenant, engine_stack, serve_process
from tests.service.test_streams import ends, long_workflow
from tests.stream_helpers import ids, next_event, read_until, subscribe

pytestmark = pytest.mark.postgres

# The second server hears of commits only through wake-ups: its fallback poll never fires.
WAKE_UPS_ONLY = {"WFE_EVENT_POLL_SECONDS": "60", "WFE_STREAM_HEARTBEAT_SECONDS": "0.5"}
# long_workflow(8): ten steps, an event as each starts and as it completes, one as the
# execution is admitted and one as it ends.
EVENTS_PER_RUN = 22


@pytest.fixture
def shared_broker() -> str:
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    return url


async def logged_ids(database: TenantDatabase, tenant: str) -> list[int]:
    """Every execution event of the tenant, as the log holds them."""
    async with database.transaction(TenantId(tenant)) as session:
        found = await session.scalars(
            select(Event.id).where(Event.execution_id.is_not(None)).order_by(Event.id)
        )
        return list(found)


async def test_sigterm_ends_streams_with_unavailable_and_the_client_resumes_elsewhere(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path, shared_broker: str
) -> None:
    async with (
        engine_stack(postgres, effects, tmp_path / "stack", broker=shared_broker) as stack,
        serve_process(
            postgres, effects, tmp_path / "second", broker=shared_broker, extra_env=WAKE_UPS_ONLY
        ) as (process, second, _),
    ):
        tenant = await create_tenant(postgres, "enterprise")
        workflow_id = await active_workflow(stack.channel, tenant, long_workflow(2))
        first_run = await start(stack.channel, tenant, workflow_id, {})
        stream = subscribe(second, tenant, [f"execution:{first_run.id}"], 0)
        before = await read_until(stream, ends, patience=30)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as caught:
            await next_event(stream, patience=30)
        assert error_info(caught.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
        assert await asyncio.to_thread(process.wait, 30) == 0
        resumed = subscribe(
            stack.channel, tenant, ["all_executions"], before[-1].event_id, ["admin"]
        )
        second_run = await start(stack.channel, tenant, workflow_id, {})
        after = await read_until(resumed, ends, patience=30)
        assert {e.execution_id for e in after} == {second_run.id}
        assert ids(before + after) == await logged_ids(stack.database, tenant)
        resumed.cancel()
