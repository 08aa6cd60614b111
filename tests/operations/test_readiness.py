"""A server is ready (health SERVING) only while its database answers and its schema is at
the latest migration: a deployment that ran before `wfe migrate` takes no traffic."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from persistence import revision
from service.server import RunningServer, start_server
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, server_settings
from tests.databases import sqlite_database
from tests.execution_helpers import eventually
from workers.embedded import EmbeddedEngine

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def stamp(database: Path, version: str) -> None:
    """Say the schema is at `version`, as a database migrated by an older release would."""
    with sqlite3.connect(database, timeout=60) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (version,))


async def status(channel: aio.Channel, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    answer = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    return int(answer.status)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[aio.Channel, Path, RunningServer]]:
    with sqlite_database(tmp_path) as created:
        file = tmp_path / "wfe-test.db"
        stamp(file, "0001")  # a release behind: the server must not serve it
        database = TenantDatabase(created.service_url, pool_size=2, max_overflow=0)
        settings = server_settings(readiness_check_seconds=0.1)
        engine = EmbeddedEngine(settings, database)
        await engine.start()
        verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
        running = await start_server(settings, database, verifier, engine.publisher)
        try:
            async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                yield channel, file, running
        finally:
            await running.stop(0)
            await engine.stop()
            await database.dispose()


async def test_a_server_serves_only_once_its_schema_is_at_the_latest_migration(
    served: tuple[aio.Channel, Path, RunningServer],
) -> None:
    channel, file, running = served
    assert await status(channel) == NOT_SERVING
    assert await status(channel, "wfe.v1.ExecutionService") == NOT_SERVING
    assert running.readiness.reason is not None and "wfe migrate" in running.readiness.reason

    (latest,) = revision.head()
    stamp(file, latest)

    async def serving() -> bool:
        return await status(channel) == SERVING

    await eventually(serving, "SERVING once migrated")
    assert await status(channel, "wfe.v1.ExecutionService") == SERVING

    stamp(file, "0001")  # rolled back under it: out of rotation again

    async def not_serving() -> bool:
        return await status(channel) == NOT_SERVING

    await eventually(not_serving, "NOT_SERVING once behind again")


def test_the_latest_migration_is_read_as_alembic_reads_it() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(revision.MIGRATIONS))
    assert revision.head() == frozenset(ScriptDirectory.from_config(config).get_heads())
