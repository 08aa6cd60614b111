"""Live streams across processes (PostgreSQL): `wfe worker` processes commit the events, and
subscribers on any server process receive each of them once, in order, across reconnects
and a server's SIGTERM."""

from __future__ import annotations

import asyncio
import random
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
from tests.execution_helpers import active_workflow, http, start, step, workflow
from tests.fault_harness import create_tenant, engine_stack, serve_process
from tests.service.test_streams import ends, long_workflow
from tests.stream_helpers import ids, next_event, read_until, subscribe
from wfe.v1 import event_pb2

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


async def test_events_a_worker_writes_reach_a_subscriber_on_a_second_server(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path, shared_broker: str
) -> None:
    async with (
        engine_stack(postgres, effects, tmp_path / "stack", broker=shared_broker) as stack,
        serve_process(
            postgres, effects, tmp_path / "second", broker=shared_broker, extra_env=WAKE_UPS_ONLY
        ) as (_, second, _),
    ):
        tenant = await create_tenant(postgres, "enterprise")
        # After the slow call nothing is in flight for a second: what follows it reaches the
        # second server only through the wake-up the worker sends once it has committed.
        document = workflow(
            step("input", "input", "slow", name="Input"),
            http("slow", "done", effects.url(sleep=1)),
            step("done", "output", name="Done", config={"values": {}}),
        )
        workflow_id = await active_workflow(stack.channel, tenant, document)
        stream = subscribe(second, tenant, ["all_executions"], roles=["admin"])
        assert (await stream.read()).event.WhichOneof("payload") == "heartbeat"  # subscribed
        started = await start(stack.channel, tenant, workflow_id, {})
        found = await read_until(stream, ends, patience=30)
        assert {e.execution_id for e in found} == {started.id}
        assert "slow" in [e.workflow_step_completed.step_id for e in found]
        assert ids(found) == await logged_ids(stack.database, tenant)
        stream.cancel()


async def test_resuming_under_concurrent_commits_from_two_workers_never_skips_or_repeats(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path, shared_broker: str
) -> None:
    async with engine_stack(
        postgres, effects, tmp_path / "stack", broker=shared_broker, workers=((), ())
    ) as stack:
        tenant = await create_tenant(postgres, "enterprise")
        workflow_id = await active_workflow(stack.channel, tenant, long_workflow(8))
        runs = 16
        whole = subscribe(stack.channel, tenant, ["all_executions"], roles=["admin"])
        assert (await whole.read()).event.WhichOneof("payload") == "heartbeat"
        changes = subscribe(stack.channel, tenant, ["all_workflows"], 0, ["admin"])
        created = (await next_event(changes)).event_id  # every execution event follows it
        changes.cancel()

        async def choppy(seed: int) -> list[event_pb2.Event]:
            """Reconnects after 1 to 15 events, at random, while the workers commit."""
            chooser = random.Random(seed)
            received: list[event_pb2.Event] = []
            while sum(ends(e) for e in received) < runs:
                after = received[-1].event_id if received else created
                stream = subscribe(stack.channel, tenant, ["all_executions"], after, ["admin"])
                for _ in range(chooser.randint(1, 15)):
                    received.append(await next_event(stream, patience=60))
                    if sum(ends(e) for e in received) == runs:
                        break
                stream.cancel()
            return received

        readers = [asyncio.create_task(choppy(seed)) for seed in range(3)]
        await asyncio.gather(*(start(stack.channel, tenant, workflow_id, {}) for _ in range(runs)))
        uninterrupted: list[event_pb2.Event] = []
        while sum(ends(e) for e in uninterrupted) < runs:
            uninterrupted.append(await next_event(whole, patience=60))
        logged = await logged_ids(stack.database, tenant)
        assert ids(uninterrupted) == logged
        assert len(logged) == runs * EVENTS_PER_RUN
        for reader in readers:
            assert ids(await reader) == logged
        whole.cancel()


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
