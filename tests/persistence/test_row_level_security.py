"""The database wall (PostgreSQL): row-level security binds the service role.

These tests use raw SQL, which the application wall never sees, so only the
database's policies stand between one tenant and another here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.persistence.database import Database
from service.tenants import service as tenants
from tenancy.context import TenantId
from tests.databases import ThrowawayDatabase

pytestmark = pytest.mark.postgres

INSERT_EVENT = text(
    "INSERT INTO events (tenant_id, type, payload, created_at) VALUES (:t, :m, '{}', now())"
)


@pytest.fixture(scope="module")
async def pg_service(postgres: ThrowawayDatabase) -> AsyncIterator[Database]:
    db = Database(postgres.service_url, pool_size=2, max_overflow=0)
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
async def pg_tenants(postgres: ThrowawayDatabase) -> list[TenantId]:
    admin = Database(postgres.admin_url, pool_size=1, max_overflow=0)
    ids = [TenantId(f"rls-{uuid.uuid4().hex[:8]}") for _ in range(5)]
    async with admin.transaction(None) as session:
        for tenant_id in ids:
            await tenants.create(session, tenant_id, tenant_id, "free")
    await admin.dispose()
    return ids


async def insert_event(db: Database, tenant: TenantId, marker: str) -> None:
    async with db.transaction(tenant) as session:
        await session.execute(
            INSERT_EVENT,
            {"t": tenant, "m": marker},
        )


async def raw_tenants_seen(db: Database, tenant: TenantId | None, table: str) -> set[str]:
    column = "id" if table == "tenants" else "tenant_id"
    async with db.transaction(tenant) as session:
        rows = await session.execute(text(f"SELECT {column} FROM {table}"))
        return {row[0] for row in rows}


async def test_catalog_shows_rls_forced_and_a_powerless_service_role(
    postgres: ThrowawayDatabase, pg_service: Database
) -> None:
    async with pg_service.transaction(None) as session:
        owned = await session.execute(
            text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                "pg_get_userbyid(c.relowner) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' AND (c.relname = 'tenants' "
                "OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
                "AND a.attname = 'tenant_id' AND NOT a.attisdropped))"
            )
        )
        tables = {name: (rls, forced, owner) for name, rls, forced, owner in owned}
        role = (
            await session.execute(
                text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
        append_only = (
            await session.execute(
                text(
                    "SELECT has_table_privilege('events', 'UPDATE'), "
                    "has_table_privilege('events', 'DELETE')"
                )
            )
        ).one()
    assert {"tenants", "events", "usage_counters"} <= set(tables)
    for name, (rls, forced, owner) in tables.items():
        assert rls and forced, f"{name} lacks forced row-level security"
        assert owner != postgres.service_role, f"the service role owns {name}"
    assert tuple(role) == (False, False)
    assert tuple(append_only) == (False, False)


async def test_raw_sql_sees_only_the_own_tenants_rows(
    pg_service: Database, pg_tenants: list[TenantId]
) -> None:
    tenant_a, tenant_b = pg_tenants[0], pg_tenants[1]
    await insert_event(pg_service, tenant_a, "a")
    await insert_event(pg_service, tenant_b, "b")
    for table in ("events", "tenants"):
        assert await raw_tenants_seen(pg_service, tenant_a, table) == {tenant_a}


async def test_no_tenant_setting_sees_no_rows(
    pg_service: Database, pg_tenants: list[TenantId]
) -> None:
    await insert_event(pg_service, pg_tenants[0], "present")
    for table in ("events", "tenants", "usage_counters"):
        assert await raw_tenants_seen(pg_service, None, table) == set()


async def test_insert_naming_another_tenant_is_refused(
    pg_service: Database, pg_tenants: list[TenantId]
) -> None:
    tenant_a, tenant_b = pg_tenants[0], pg_tenants[1]
    with pytest.raises(DBAPIError, match="row-level security"):
        async with pg_service.transaction(tenant_a) as session:
            await session.execute(
                INSERT_EVENT,
                {"t": tenant_b, "m": "smuggled"},
            )
    async with pg_service.transaction(tenant_b) as session:
        smuggled = await session.scalar(text("SELECT count(*) FROM events WHERE type = 'smuggled'"))
    assert smuggled == 0


async def test_update_and_delete_of_events_are_refused(
    pg_service: Database, pg_tenants: list[TenantId]
) -> None:
    for statement in ("UPDATE events SET type = 'rewritten'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with pg_service.transaction(pg_tenants[0]) as session:
                await session.execute(text(statement))


async def test_pooled_connection_does_not_carry_the_tenant_over(
    postgres: ThrowawayDatabase, pg_tenants: list[TenantId]
) -> None:
    single = Database(postgres.service_url, pool_size=1, max_overflow=0)
    try:
        async with single.transaction(pg_tenants[0]) as session:
            first = await session.scalar(text("SELECT pg_backend_pid()"))
        async with single.transaction(None) as session:
            again = await session.scalar(text("SELECT pg_backend_pid()"))
            setting = await session.scalar(text("SELECT current_setting('app.tenant_id', true)"))
    finally:
        await single.dispose()
    assert first == again
    assert not setting


OPERATIONS = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["commit", "rollback", "read"])),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(operations=OPERATIONS)
async def test_interleaved_tenants_over_two_connections_never_see_each_other(
    pg_service: Database, pg_tenants: list[TenantId], operations: list[tuple[int, str]]
) -> None:
    run = uuid.uuid4().hex[:8]
    committed: dict[TenantId, set[str]] = {t: set() for t in pg_tenants}
    attempted: dict[TenantId, set[str]] = {t: set() for t in pg_tenants}

    class Rollback(Exception):
        pass

    async def operate(index: int, who: int, action: str) -> None:
        tenant = pg_tenants[who]
        marker = f"{run}-{index}"
        if action == "read":
            before = set(committed[tenant])
            async with pg_service.transaction(tenant) as session:
                rows = await session.execute(
                    text("SELECT tenant_id, type FROM events WHERE type LIKE :p"),
                    {"p": f"{run}-%"},
                )
                seen = [(row[0], row[1]) for row in rows]
            assert {owner for owner, _ in seen} <= {tenant}
            assert before <= {m for _, m in seen} <= attempted[tenant]
            return
        attempted[tenant].add(marker)
        try:
            async with pg_service.transaction(tenant) as session:
                await session.execute(
                    INSERT_EVENT,
                    {"t": tenant, "m": marker},
                )
                if action == "rollback":
                    raise Rollback
        except Rollback:
            return
        committed[tenant].add(marker)

    await asyncio.gather(*(operate(i, who, act) for i, (who, act) in enumerate(operations)))
    for tenant in pg_tenants:
        async with pg_service.transaction(tenant) as session:
            rows = await session.execute(
                text("SELECT type FROM events WHERE type LIKE :p"), {"p": f"{run}-%"}
            )
            assert {row[0] for row in rows} == committed[tenant]
