"""Pooled connections: one the server closed while it sat idle is replaced at checkout, so
the next transaction never meets it (and no checkout pays a ping round trip)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from tenancy.database import TenantDatabase
from tests.databases import ThrowawayDatabase, _dsn, postgres_admin_url


async def backend_pid(database: TenantDatabase) -> int:
    async with database.transaction(None) as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)


@pytest.mark.postgresql_only
async def test_a_connection_the_server_closed_while_idle_is_replaced_before_a_call_meets_it(
    test_database: ThrowawayDatabase,
) -> None:
    database = TenantDatabase(test_database.service_url, pool_size=1, max_overflow=0)
    try:
        first = await backend_pid(database)
        assert await backend_pid(database) == first  # the pool hands the same one back
        with psycopg.connect(_dsn(postgres_admin_url()), autocommit=True) as superuser:
            superuser.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
        second = await backend_pid(database)  # no error: a new connection took its place
        assert second != first
        assert await backend_pid(database) == second
    finally:
        await database.dispose()
