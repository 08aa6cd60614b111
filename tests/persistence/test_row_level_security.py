"""The database wall (PostgreSQL): forced row-level security binds the service role.

Raw SQL never passes the application wall, so here only the policies, the grants and
the transaction-local `app.tenant_id` stand between one tenant and another.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from engine import events
from foundation.orm import Base
from persistence.migrate import SERVICE_GRANTS
from persistence.models import Event
from service.tenants import service as tenants
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.databases import ThrowawayDatabase
from tiers import repository as counters

pytestmark = pytest.mark.postgres

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
INSERT_EVENT = text(
    "INSERT INTO events (tenant_id, type, payload, created_at) "
    "VALUES (:tenant, :type, '{}', now()) RETURNING id"
)


async def create_tenants(owner_db: TenantDatabase, count: int) -> list[TenantId]:
    ids = [TenantId(f"rls-{uuid.uuid4().hex[:12]}") for _ in range(count)]
    async with owner_db.transaction(None) as session:
        for tenant_id in ids:
            await tenants.create(session, tenant_id, f"Tenant {tenant_id}", "free")
    return ids


@pytest.fixture
async def populated(service_db: TenantDatabase, owner_db: TenantDatabase) -> list[TenantId]:
    """Two tenants, each with three events and a usage counter."""
    pair = await create_tenants(owner_db, 2)
    for tenant in pair:
        async with service_db.transaction(tenant) as session:
            for n in range(3):
                await events.append(session, "seeded", {"n": n})
            await counters.increment(session, tenant, "workflows", "", 1, None)
    return pair


async def rows(db: TenantDatabase, tenant: TenantId | None, sql: str, **params: Any) -> list[Any]:
    async with db.transaction(tenant) as session:
        return [row[0] for row in await session.execute(text(sql), params)]


# Read across tenants by the sweeper on purpose: ids and times, no tenant data.
CROSS_TENANT_QUEUES = {"dispatch_queue"}


def owner_column(table: str) -> str:
    return "id" if table == "tenants" else "tenant_id"


def refused(caught: pytest.ExceptionInfo[DBAPIError], message: str) -> bool:
    return isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege) and (
        message in str(caught.value.orig)
    )


async def test_tenant_tables_have_forced_row_level_security(owner_db: TenantDatabase) -> None:
    catalog = await rows(
        owner_db,
        None,
        "SELECT json_build_array(c.relname, c.relrowsecurity, c.relforcerowsecurity) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND (c.relname = 'tenants' "
        "OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
        "AND a.attname = 'tenant_id' AND NOT a.attisdropped))",
    )
    flags = {
        name: (enabled, forced)
        for name, enabled, forced in catalog
        if name not in CROSS_TENANT_QUEUES
    }
    orm_owned = {t.name for t in Base.metadata.tables.values() if "tenant_id" in t.c}
    assert {"tenants", "events", "usage_counters"} | orm_owned - CROSS_TENANT_QUEUES <= set(flags)
    assert {name: (True, True) for name in flags} == flags


def test_the_cross_tenant_dispatch_queue_holds_ids_times_and_routing_only() -> None:
    """The sweeper reads it across tenants, so it must never hold a tenant's data."""
    columns = {
        column.name: type(column.type).__name__
        for column in Base.metadata.tables["dispatch_queue"].columns
    }
    assert set(columns) == {
        "execution_id",
        "step_id",
        "attempt",
        "tenant_id",
        "state",
        "fire_at",
        "lease_until",
        "published_at",
        "publishes",
        "priority",
        "awaits_io",
    }
    assert "JSON" not in columns.values()


async def test_only_the_owner_gets_the_unrestricted_registry_policy(
    owner_db: TenantDatabase, postgres: ThrowawayDatabase
) -> None:
    policies = await rows(
        owner_db,
        None,
        "SELECT json_build_array(tablename, policyname, roles::text[], qual) "
        "FROM pg_policies WHERE schemaname = 'public'",
    )
    for table, name, roles, qual in policies:
        if "current_setting('app.tenant_id'" in qual:
            assert "NULLIF" in qual, f"{table}.{name} does not fail closed on ''"
        else:
            assert roles == [postgres.owner_role], f"{table}.{name} is open to {roles}"
    assert {table for table, *_ in policies} == {
        "tenants",
        "events",
        "usage_counters",
        "workflows",
        "workflow_versions",
        "workflow_templates",
        "executions",
        "step_attempts",
        "notifications",
        "notification_preferences",
    }


async def test_service_role_is_powerless(
    service_db: TenantDatabase, postgres: ThrowawayDatabase
) -> None:
    role = postgres.service_role
    [attributes] = await rows(
        service_db,
        None,
        "SELECT json_build_array(rolsuper, rolbypassrls, pg_has_role(:role, :owner, 'MEMBER')) "
        "FROM pg_roles WHERE rolname = :role",
        role=role,
        owner=postgres.owner_role,
    )
    assert attributes == [False, False, False]
    owned = await rows(
        service_db,
        None,
        "SELECT relname FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles "
        "WHERE rolname = :role) UNION ALL SELECT nspname FROM pg_namespace "
        "WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = :role)",
        role=role,
    )
    assert owned == []


async def test_service_role_has_exactly_the_declared_grants(
    service_db: TenantDatabase, postgres: ThrowawayDatabase
) -> None:
    """The event log is never rewritten: no UPDATE (DELETE is the retention purge's)."""
    assert "UPDATE" not in SERVICE_GRANTS["events"]
    for table in [*SERVICE_GRANTS, "alembic_version"]:
        held = {
            privilege
            for privilege in PRIVILEGES
            if await rows(
                service_db,
                None,
                "SELECT has_table_privilege(:role, :table, :privilege)",
                role=postgres.service_role,
                table=table,
                privilege=privilege,
            )
            == [True]
        }
        declared = SERVICE_GRANTS.get(table, ())
        assert held == {p for p in declared if "(" not in p}, table
        for column_grant in (p for p in declared if "(" in p):
            privilege, _, columns = column_grant.partition(" (")
            for column in columns.rstrip(")").split(", "):
                assert await rows(
                    service_db,
                    None,
                    "SELECT has_column_privilege(:role, :table, :column, :privilege)",
                    role=postgres.service_role,
                    table=table,
                    column=column,
                    privilege=privilege,
                ) == [True], f"{table}.{column}"


async def test_stored_workflow_versions_cannot_be_rewritten(
    service_db: TenantDatabase, postgres: ThrowawayDatabase
) -> None:
    """A version's definition is immutable for the service; only its publication is added."""
    for column, allowed in (("definition", False), ("version", False), ("release_notes", True)):
        assert await rows(
            service_db,
            None,
            "SELECT has_column_privilege(:role, 'workflow_versions', :column, 'UPDATE')",
            role=postgres.service_role,
            column=column,
        ) == [allowed], column


@pytest.mark.parametrize("table", ["events", "usage_counters", "tenants"])
async def test_raw_select_sees_only_the_own_tenant(
    service_db: TenantDatabase, populated: list[TenantId], table: str
) -> None:
    tenant_a, tenant_b = populated
    seen = await rows(service_db, tenant_a, f"SELECT {owner_column(table)} FROM {table}")
    assert set(seen) == {tenant_a}
    assert len(seen) == {"events": 3, "usage_counters": 1, "tenants": 1}[table]
    assert tenant_b not in await rows(
        service_db,
        tenant_a,
        f"SELECT {owner_column(table)} FROM {table} WHERE {owner_column(table)} = :b",
        b=tenant_b,
    )


@pytest.mark.parametrize("table", ["events", "usage_counters", "tenants"])
async def test_without_a_tenant_raw_select_sees_nothing(
    service_db: TenantDatabase, populated: list[TenantId], table: str
) -> None:
    assert await rows(service_db, None, f"SELECT {owner_column(table)} FROM {table}") == []
    async with service_db.engine.connect() as connection:  # no session: app.tenant_id never set
        setting = await connection.scalar(text("SELECT current_setting('app.tenant_id', true)"))
        unset = (await connection.execute(text(f"SELECT 1 FROM {table}"))).all()
    assert not setting
    assert unset == []


async def test_insert_naming_another_tenant_is_refused(
    service_db: TenantDatabase, populated: list[TenantId]
) -> None:
    tenant_a, tenant_b = populated
    before = await rows(service_db, tenant_b, "SELECT id FROM events")
    for tenant in (tenant_a, None):
        with pytest.raises(DBAPIError) as caught:
            async with service_db.transaction(tenant) as session:
                await session.execute(INSERT_EVENT, {"tenant": tenant_b, "type": "smuggled"})
        assert refused(caught, "row-level security"), caught.value
    assert await rows(service_db, tenant_b, "SELECT id FROM events") == before
    assert await rows(service_db, tenant_a, "SELECT id FROM events WHERE type = 'smuggled'") == []


async def test_counters_cannot_be_changed_or_moved_across_tenants(
    service_db: TenantDatabase, populated: list[TenantId]
) -> None:
    tenant_a, tenant_b = populated
    async with service_db.transaction(tenant_a) as session:
        touched = await session.execute(
            text("UPDATE usage_counters SET used = 99 WHERE tenant_id = :b RETURNING used"),
            {"b": tenant_b},
        )
        assert touched.all() == []
    with pytest.raises(DBAPIError) as caught:
        async with service_db.transaction(tenant_a) as session:
            await session.execute(text("UPDATE usage_counters SET tenant_id = :b"), {"b": tenant_b})
    assert refused(caught, "row-level security"), caught.value
    assert await rows(service_db, tenant_b, "SELECT used FROM usage_counters") == [1]
    assert await rows(service_db, tenant_a, "SELECT used FROM usage_counters") == [1]


@pytest.mark.parametrize("statement", ["UPDATE events SET type = 'rewritten'", "TRUNCATE events"])
async def test_rewriting_the_event_log_is_refused(
    service_db: TenantDatabase, populated: list[TenantId], statement: str
) -> None:
    tenant_a = populated[0]
    with pytest.raises(DBAPIError) as caught:
        async with service_db.transaction(tenant_a) as session:
            await session.execute(text(statement))
    assert refused(caught, "permission denied"), caught.value
    assert await rows(service_db, tenant_a, "SELECT type FROM events") == ["seeded"] * 3


async def test_the_retention_purge_deletes_only_its_own_tenants_events(
    service_db: TenantDatabase, populated: list[TenantId]
) -> None:
    tenant_a, tenant_b = populated
    async with service_db.transaction(tenant_a) as session:
        await session.execute(text("DELETE FROM events"))
    assert await rows(service_db, tenant_a, "SELECT type FROM events") == []
    assert await rows(service_db, tenant_b, "SELECT type FROM events") == ["seeded"] * 3


async def test_pooled_connection_does_not_carry_the_tenant_over(
    postgres: ThrowawayDatabase, populated: list[TenantId]
) -> None:
    tenant_a, tenant_b = populated
    single = TenantDatabase(postgres.service_url, pool_size=1, max_overflow=0)
    try:
        async with single.transaction(tenant_a) as session:
            pids = [await session.scalar(text("SELECT pg_backend_pid()"))]
            assert await session.scalar(text("SELECT current_setting('app.tenant_id')")) == tenant_a
        async with single.transaction(None) as session:
            pids.append(await session.scalar(text("SELECT pg_backend_pid()")))
            carried = await session.scalar(text("SELECT current_setting('app.tenant_id', true)"))
            leaked = (await session.execute(text("SELECT tenant_id FROM events"))).all()
        with contextlib.suppress(RuntimeError):
            async with single.transaction(tenant_a) as session:
                await session.execute(text("SELECT 1"))
                raise RuntimeError("rolled back")
        async with single.engine.connect() as connection:
            pids.append(await connection.scalar(text("SELECT pg_backend_pid()")))
            raw = await connection.scalar(text("SELECT current_setting('app.tenant_id', true)"))
        async with single.transaction(tenant_b) as session:
            pids.append(await session.scalar(text("SELECT pg_backend_pid()")))
            seen = {r[0] for r in await session.execute(text("SELECT tenant_id FROM events"))}
    finally:
        await single.dispose()
    assert len(set(pids)) == 1, "the pool did not reuse its one connection"
    assert not carried
    assert leaked == []
    assert not raw
    assert seen == {tenant_b}


KINDS = ("commit", "rollback", "read_raw", "read_orm", "read_unscoped")
TENANT_COUNT = 4
OPERATION = st.tuples(st.sampled_from(KINDS), st.integers(0, TENANT_COUNT - 1))


class Rollback(Exception):
    """Raised inside a transaction block to roll it back."""


@settings(max_examples=30, deadline=None, database=None)
@given(waves=st.lists(st.lists(OPERATION, min_size=1, max_size=8), min_size=1, max_size=4))
async def test_interleaved_tenants_on_two_connections_see_only_their_commits(
    service_db: TenantDatabase, owner_db: TenantDatabase, waves: list[list[tuple[str, int]]]
) -> None:
    """Every tenant starts with one event; then waves of operations run concurrently.

    Reads race the writes of their wave, so a read must see at least what committed
    before it began and at most what committed or was in flight when it ended, and
    never a rolled-back event.
    """
    tenant_ids = await create_tenants(owner_db, TENANT_COUNT)
    committed: dict[TenantId, set[int]] = {t: set() for t in tenant_ids}
    in_flight: dict[TenantId, set[int]] = {t: set() for t in tenant_ids}
    rolled_back: set[int] = set()
    backends: set[int] = set()

    def check(tenant: TenantId, before: set[int], seen: Sequence[tuple[int, str]]) -> None:
        assert {owner for _, owner in seen} <= {tenant}
        ids = {event_id for event_id, _ in seen}
        assert len(ids) == len(seen)
        assert before <= ids <= committed[tenant] | in_flight[tenant]
        assert not ids & rolled_back

    async def operate(kind: str, tenant: TenantId) -> None:
        before = set(committed[tenant])
        if kind == "commit":
            async with service_db.transaction(tenant) as session:
                event = await events.append(session, "op", {})
                in_flight[tenant].add(event.id)
            in_flight[tenant].discard(event.id)
            committed[tenant].add(event.id)
        elif kind == "rollback":
            with contextlib.suppress(Rollback):
                async with service_db.transaction(tenant) as session:
                    rolled_back.add((await events.append(session, "op", {})).id)
                    raise Rollback
        elif kind == "read_orm":
            async with service_db.transaction(tenant) as session:
                found = (await session.scalars(select(Event))).all()
            check(tenant, before, [(e.id, e.tenant_id) for e in found])
        else:
            scope = None if kind == "read_unscoped" else tenant
            async with service_db.transaction(scope) as session:
                backends.add(await session.scalar(text("SELECT pg_backend_pid()")))
                result = await session.execute(text("SELECT id, tenant_id FROM events"))
                seen = [(row[0], row[1]) for row in result]
            if scope is None:
                assert seen == []
            else:
                check(tenant, before, seen)

    for wave in [[("commit", index) for index in range(TENANT_COUNT)], *waves]:
        outcomes = await asyncio.gather(
            *(operate(kind, tenant_ids[index]) for kind, index in wave), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    assert len(backends) <= 2
    assert not any(in_flight.values())
    for tenant in tenant_ids:
        async with service_db.transaction(tenant) as session:
            final = set(await session.scalars(select(Event.id)))
        assert final == committed[tenant]
