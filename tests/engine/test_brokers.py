"""The engine on RabbitMQ: the same workers and tasks, over AMQP instead of Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc import aio

from service.server import start_server
from service.tenants import service as tenants
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, ports, require, server_settings
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine.test_retries import calling
from tests.engine_stack import broker_engine, broker_unavailable_reason, unique_queue
from tests.execution_helpers import active_workflow, start, three_steps, wait_until
from wfe.v1 import execution_pb2

AMQP_URL = os.environ.get("WFE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
async def amqp_channel(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path
) -> AsyncIterator[tuple[aio.Channel, str]]:
    require(broker_unavailable_reason(AMQP_URL), "RabbitMQ")
    settings = server_settings(
        broker_url=AMQP_URL, queue_name=unique_queue(), http_allowed_ports=ports(effects)
    )
    database = TenantDatabase(postgres.service_url, pool_size=4, max_overflow=2)
    admin = TenantDatabase(postgres.admin_url, pool_size=1, max_overflow=0)
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    async with admin.transaction(None) as session:
        await tenants.create(session, tenant, tenant, "enterprise")
    await admin.dispose()
    with broker_engine(settings, postgres.service_url, tmp_path / "workers") as (publisher, _):
        verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
        running = await start_server(settings, database, verifier, publisher)
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield channel, tenant
        await running.stop(0)
    await database.dispose()


@pytest.mark.postgres
async def test_executions_run_to_completion_over_rabbitmq(
    amqp_channel: tuple[aio.Channel, str], effects: Effects
) -> None:
    channel, tenant = amqp_channel
    plain = await active_workflow(channel, tenant, three_steps())
    calls = await active_workflow(
        channel,
        tenant,
        calling(effects.url(fail_first=1), retry={"max_attempts": 2, "initial_interval": "0.1s"}),
    )
    started = [await start(channel, tenant, plain, {"name": f"n{i}"}) for i in range(5)]
    started += [await start(channel, tenant, calls) for _ in range(3)]
    for execution in started:
        done = await wait_until(channel, tenant, execution.id, patience=60)
        assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED, done.error_detail
    for execution in started[5:]:
        assert effects.applied_count(execution.id, "call") == 1
