"""Bring a database to the latest schema and grant the service role what it needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL, make_url

from foundation.orm import Base
from persistence.revision import MIGRATIONS

# What the service role may do per table; anything not listed it may not touch.
# The event log is append-only for the service: no UPDATE, and DELETE only for the history
# retention purge; nor does it delete workflows (deletion is soft).
SERVICE_GRANTS: dict[str, tuple[str, ...]] = {
    "tenants": ("SELECT",),
    "usage_counters": ("SELECT", "INSERT", "UPDATE"),
    "events": ("SELECT", "INSERT", "DELETE"),
    "workflows": ("SELECT", "INSERT", "UPDATE"),
    # Versions are immutable; only their publication is filled in later.
    "workflow_versions": ("SELECT", "INSERT", "UPDATE (release_notes, published_at, published_by)"),
    # A tenant's own templates are saved once and never rewritten.
    "workflow_templates": ("SELECT", "INSERT"),
    # Executions are deleted only by the retention purge; attempts with them.
    "executions": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "step_attempts": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    # Ids and times only, read across tenants by the sweeper; no row-level security.
    "dispatch_queue": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    # A notification is made once; only its reading is filled in later. The retention
    # purge deletes old ones.
    "notifications": ("SELECT", "INSERT", "UPDATE (read_at)", "DELETE"),
    "notification_preferences": ("SELECT", "INSERT", "UPDATE"),
    # Positions of the handlers that follow the log; no tenant data, no row-level security.
    "projections": ("SELECT", "INSERT", "UPDATE"),
    # Which migration the schema is at: a server reports ready only at the latest.
    "alembic_version": ("SELECT",),
}


# Functions the service role may call: each tells it only what its name says.
SERVICE_FUNCTIONS: tuple[str, ...] = (
    "wfe_tenant_ids()",
    # The live streams' dispatcher: how far the event log is final, and the events up to there.
    "wfe_event_horizon()",
    "wfe_event_feed(bigint, bigint, text[], integer)",
    # The retention purge: the event log's weekly partitions, added ahead and dropped past
    # the longest retention (each also checks its caller's privilege on events).
    "wfe_event_partitions_add(integer)",
    "wfe_event_partitions_drop(integer)",
)


def sync_url(url: str | URL) -> URL:
    """The synchronous twin of an async database URL (migrations run synchronously)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return parsed.set(drivername="sqlite")
    return parsed


def upgrade(admin_url: str, *, service_role: str | None = None, revision: str = "head") -> None:
    """Apply migrations as the owner role; grant `service_role` its table privileges."""
    _run(admin_url, command.upgrade, revision, service_role)


def downgrade(admin_url: str, revision: str) -> None:
    """Undo migrations down to `revision`, as the owner role."""
    _run(admin_url, command.downgrade, revision, None)


def _run(
    admin_url: str,
    step: Callable[[Config, str], None],
    revision: str,
    service_role: str | None,
) -> None:
    url = sync_url(admin_url)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            step(config, revision)
            if service_role and connection.dialect.name == "postgresql":
                grant_service_role(connection, service_role)
    finally:
        engine.dispose()


def grant_service_role(connection: Connection, role: str) -> None:
    missing = set(Base.metadata.tables) - set(SERVICE_GRANTS)
    if missing:
        raise RuntimeError(f"no service grants declared for tables: {sorted(missing)}")
    quoted = connection.dialect.identifier_preparer.quote(role)
    connection.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
    connection.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))
    for table, privileges in SERVICE_GRANTS.items():
        connection.execute(text(f"REVOKE ALL ON {table} FROM {quoted}"))
        connection.execute(text(f"GRANT {', '.join(privileges)} ON {table} TO {quoted}"))
    for function in SERVICE_FUNCTIONS:
        connection.execute(text(f"GRANT EXECUTE ON FUNCTION {function} TO {quoted}"))


def service_role_of(service_url: str, admin_url: str) -> str | None:
    """The role the service logs in as, when it differs from the migrating role."""
    service_user = make_url(service_url).username
    if service_user and service_user != make_url(admin_url).username:
        return service_user
    return None
