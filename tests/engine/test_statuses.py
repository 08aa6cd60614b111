"""Statuses are closed sets: the enums, their proto mapping, and the database's CHECKs.

The enums' values are what is stored and what the seed's events carry; the servicer
maps them once to the proto enums; the database refuses any other value, on both
backends, even from SQL that passes no ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, Enum, create_engine, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, StatementError

from engine.progress import StepStatus
from engine.transitions import TERMINAL
from engine.units import utcnow
from foundation.orm import Base
from persistence.migrate import downgrade, upgrade
from persistence.models import (
    AttemptStatus,
    Dispatch,
    DispatchState,
    Execution,
    ExecutionStatus,
    StepAttempt,
    Workflow,
)
from service.servicers.execution import STATUS_FILTERS, STATUSES, STEP_STATUSES
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant
from wfe.v1 import execution_pb2

# Each status column: its table, the enum it holds, the model, and a value it holds now.
COLUMNS = {
    "executions.status": ("executions", "status", ExecutionStatus),
    "step_attempts.status": ("step_attempts", "status", AttemptStatus),
    "dispatch_queue.state": ("dispatch_queue", "state", DispatchState),
}
MODELS: dict[str, type[Any]] = {
    "executions": Execution,
    "step_attempts": StepAttempt,
    "dispatch_queue": Dispatch,
}


def proto_values(enum: Any) -> set[int]:
    return {number for name, number in enum.items() if not name.endswith("_UNSPECIFIED")}


# The proto mapping (pure: no database).


def test_every_execution_status_maps_to_a_proto_status_and_back() -> None:
    assert set(STATUSES) == set(ExecutionStatus)
    for status in ExecutionStatus:
        number = STATUSES[status]
        assert execution_pb2.ExecutionStatus.Name(number) == f"EXECUTION_STATUS_{status.name}"
        assert STATUS_FILTERS[number] is status


def test_every_proto_execution_status_but_unspecified_has_an_enum_member() -> None:
    assert set(STATUS_FILTERS) == proto_values(execution_pb2.ExecutionStatus)
    assert execution_pb2.EXECUTION_STATUS_UNSPECIFIED not in STATUS_FILTERS


def test_every_step_status_maps_to_a_proto_step_status_and_back() -> None:
    assert set(STEP_STATUSES) == set(StepStatus)
    back = {number: status for status, number in STEP_STATUSES.items()}
    assert len(back) == len(STEP_STATUSES), "two step statuses share a proto value"
    for status in StepStatus:
        number = STEP_STATUSES[status]
        assert execution_pb2.StepStatus.Name(number) == f"STEP_STATUS_{status.name}"
        assert back[number] is status


def test_every_proto_step_status_but_unspecified_has_an_enum_member() -> None:
    assert set(STEP_STATUSES.values()) == proto_values(execution_pb2.StepStatus)
    assert execution_pb2.STEP_STATUS_UNSPECIFIED not in STEP_STATUSES.values()


def test_status_values_are_the_seeds_lower_case_words() -> None:
    for enum in (ExecutionStatus, AttemptStatus, DispatchState, StepStatus):
        for member in enum:
            assert member.value == member.name.lower()
            assert str(member) == member.value and f"{member}" == member.value


def test_terminal_statuses_are_execution_statuses() -> None:
    assert all(isinstance(status, ExecutionStatus) for status in TERMINAL)
    assert {s.value for s in TERMINAL} == {"completed", "failed", "cancelled"}


# The database (SQLite and PostgreSQL).


@dataclass(frozen=True)
class Rows:
    tenant: TenantId
    execution_id: str

    def key(self, table: str) -> dict[str, Any]:
        """The WHERE that picks this test's row of `table`."""
        if table == "executions":
            return {"id": self.execution_id}
        return {"execution_id": self.execution_id, "step_id": "only", "attempt": 1}


@pytest.fixture
async def rows(database: TenantDatabase, new_tenant: NewTenant) -> AsyncIterator[Rows]:
    """One execution, one attempt of its step and its dispatch row, written directly."""
    tenant = TenantId(await new_tenant("free"))
    now = utcnow()
    workflow_id, execution_id = str(uuid.uuid4()), str(uuid.uuid4())
    definition = {"name": "statuses", "steps": [{"id": "only", "type": "input"}]}
    async with database.transaction(tenant) as session:
        session.add(
            Workflow(
                id=workflow_id,
                name="statuses",
                status="active",
                version=1,
                definition=definition,
                created_by="user-1",
                updated_by="user-1",
            )
        )
        await session.flush()
        session.add(
            Execution(
                id=execution_id,
                workflow_id=workflow_id,
                workflow_version=1,
                definition=definition,
                input={},
                status=ExecutionStatus.IN_PROGRESS,
                steps={"total_steps": 1, "current_step_number": 1, "step_list": []},
                created_by="user-1",
            )
        )
        await session.flush()
        session.add(
            StepAttempt(
                execution_id=execution_id,
                step_id="only",
                attempt=1,
                status=AttemptStatus.RUNNING,
            )
        )
        session.add(
            Dispatch(
                execution_id=execution_id,
                step_id="only",
                attempt=1,
                tenant_id=tenant,
                state=DispatchState.RUNNING,
                # Far ahead: the running sweeper never takes it while a test writes its state.
                fire_at=now + timedelta(days=1),
            )
        )
    yield Rows(tenant, execution_id)


def _where(table: str, rows: Rows) -> str:
    return " AND ".join(f"{name} = :{name}" for name in rows.key(table))


def _update_sql(table: str, column: str, rows: Rows) -> tuple[Any, dict[str, Any]]:
    """Raw SQL: nothing between it and the database's own checks."""
    return text(f"UPDATE {table} SET {column} = :value WHERE {_where(table, rows)}"), rows.key(
        table
    )


@pytest.mark.parametrize("column", COLUMNS)
async def test_the_database_refuses_a_status_outside_the_enum(
    database: TenantDatabase, rows: Rows, column: str
) -> None:
    table, name, _ = COLUMNS[column]
    statement, key = _update_sql(table, name, rows)
    with pytest.raises(IntegrityError, match=f"ck_{table}_{name}"):
        async with database.transaction(rows.tenant) as session:
            await session.execute(statement, {**key, "value": "bogus"})


async def test_the_database_refuses_a_new_row_with_a_status_outside_the_enum(
    database: TenantDatabase, rows: Rows
) -> None:
    with pytest.raises(IntegrityError, match="ck_step_attempts_status"):
        async with database.transaction(rows.tenant) as session:
            await session.execute(
                text(
                    "INSERT INTO step_attempts (execution_id, step_id, attempt, tenant_id,"
                    " status, due_at, claims) VALUES (:execution_id, 'only', 2, :tenant,"
                    " 'bogus', :now, 0)"
                ),
                {"execution_id": rows.execution_id, "tenant": rows.tenant, "now": utcnow()},
            )


@pytest.mark.parametrize("column", COLUMNS)
async def test_the_orm_refuses_a_status_outside_the_enum_before_the_database_does(
    database: TenantDatabase, rows: Rows, column: str
) -> None:
    table, name, _ = COLUMNS[column]
    model = MODELS[table]
    with pytest.raises(StatementError) as refused:
        async with database.transaction(rows.tenant) as session:
            row = await session.get(model, rows.key(table))
            assert row is not None
            setattr(row, name, "bogus")
    assert isinstance(refused.value.orig, LookupError)
    assert not isinstance(refused.value, IntegrityError)


@pytest.mark.parametrize("column", COLUMNS)
async def test_every_enum_value_is_stored_as_its_word_and_read_back_as_the_member(
    database: TenantDatabase, rows: Rows, column: str
) -> None:
    table, name, enum = COLUMNS[column]
    model = MODELS[table]
    statement, key = _update_sql(table, name, rows)
    stored = text(f"SELECT {name} FROM {table} WHERE {_where(table, rows)}")
    for member in enum:
        async with database.transaction(rows.tenant) as session:
            await session.execute(statement, {**key, "value": member.value})
        async with database.transaction(rows.tenant) as session:
            assert (await session.execute(stored, key)).scalar_one() == member.value
            value = await session.scalar(select(getattr(model, name)).filter_by(**rows.key(table)))
            assert type(value) is enum and value is member


def _check_constraints(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table: {str(check["name"]) for check in inspector.get_check_constraints(table)}
        for table in MODELS
    }


async def test_the_migrated_schema_has_the_checks_the_models_declare(
    admin_database: TenantDatabase,
) -> None:
    declared = {
        table: {
            str(constraint.name)
            for constraint in Base.metadata.tables[table].constraints
            if isinstance(constraint, CheckConstraint)
        }
        for table in MODELS
    }
    assert declared == {
        "executions": {"ck_executions_status"},
        "step_attempts": {"ck_step_attempts_status"},
        "dispatch_queue": {"ck_dispatch_queue_state"},
    }
    async with admin_database.engine.connect() as connection:
        migrated = await connection.run_sync(_check_constraints)
    assert migrated == declared


def _values_of(enum: type[StrEnum]) -> set[str]:
    return {member.value for member in enum}


def test_the_models_check_exactly_the_enum_values() -> None:
    for table, name, enum in COLUMNS.values():
        column_type = Base.metadata.tables[table].c[name].type
        assert isinstance(column_type, Enum) and not column_type.native_enum
        assert set(column_type.enums) == _values_of(enum)
        assert column_type.length == 16


@pytest.mark.integration
def test_the_status_checks_migrate_up_and_down_on_sqlite_keeping_every_row(
    tmp_path: Path,
) -> None:
    """SQLite rebuilds each table to add its CHECK: rows, indexes and keys must survive."""
    url = f"sqlite:///{tmp_path / 'migrate.db'}"
    upgrade(url, revision="0003")
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO tenants (id, name, tier, limit_overrides, created_at)"
            " VALUES ('t1', 'T', 'free', '{}', '2024-01-01')",
            "INSERT INTO workflows (id, tenant_id, name, status, version, definition,"
            " created_at, updated_at, created_by, updated_by)"
            " VALUES ('w1', 't1', 'n', 'active', 1, '{}', '2024-01-01', '2024-01-01', 'a', 'a')",
            "INSERT INTO executions (id, tenant_id, workflow_id, workflow_version, definition,"
            " input, status, steps, outputs, progress, holds_slot, created_at, created_by,"
            " updated_at) VALUES ('e1', 't1', 'w1', 1, '{}', '{}', 'failed', '{}', '{}', 1.0,"
            " 0, '2024-01-01', 'a', '2024-01-01')",
            "INSERT INTO step_attempts (execution_id, step_id, attempt, tenant_id, status,"
            " due_at, claims) VALUES ('e1', 's', 1, 't1', 'running', '2024-01-01', 1)",
            "INSERT INTO dispatch_queue (execution_id, step_id, attempt, tenant_id, state,"
            " fire_at, publishes, priority) VALUES ('e1', 's', 1, 't1', 'waiting',"
            " '2024-01-01', 0, 0)",
        ):
            connection.execute(text(statement))
    before = _schema(engine)
    engine.dispose()

    upgrade(url)
    engine = create_engine(url)
    upgraded = _schema(engine)
    assert upgraded["rows"] == before["rows"] == [1, 1, 1]
    assert upgraded["indexes"] == before["indexes"]
    assert upgraded["keys"] == before["keys"]
    assert upgraded["unique"] == before["unique"] != {t: [] for t in MODELS}
    assert upgraded["checks"] == {
        "executions": {"ck_executions_status"},
        "step_attempts": {"ck_step_attempts_status"},
        "dispatch_queue": {"ck_dispatch_queue_state"},
    }
    with pytest.raises(IntegrityError, match="ck_executions_status"), engine.begin() as connection:
        connection.execute(text("UPDATE executions SET status = 'bogus'"))
    engine.dispose()

    downgrade(url, "0003")
    engine = create_engine(url)
    assert _schema(engine) == before
    engine.dispose()


def _schema(engine: Any) -> dict[str, Any]:
    with engine.connect() as connection:
        inspector = inspect(connection)
        return {
            "rows": [
                connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in MODELS
            ],
            "indexes": {t: sorted(i["name"] for i in inspector.get_indexes(t)) for t in MODELS},
            "keys": {
                t: sorted(str(k["name"]) for k in inspector.get_foreign_keys(t)) for t in MODELS
            },
            "unique": {
                t: sorted(str(u["name"]) for u in inspector.get_unique_constraints(t))
                for t in MODELS
            },
            "checks": {
                t: {str(c["name"]) for c in inspector.get_check_constraints(t)} for t in MODELS
            },
        }
