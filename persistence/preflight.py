"""Refuse a database role that row-level security would not bind.

Superusers and BYPASSRLS roles skip every policy, and a table's owner can switch its
policies off; a service connected as any of them would serve tenants without the wall
and nobody would notice. So serve, worker and beat check their role before starting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from persistence.migrate import sync_url

CONNECT_TIMEOUT_SECONDS = 10
REMEDY = "connect as the service role (see deploy/postgres/roles.sql)"

# One row: the current role's attributes and the tables of the current schema it owns,
# itself or through a role whose privileges it inherits (PostgreSQL's ownership check).
ROLE_QUERY = text(
    """
    SELECT r.rolname, r.rolsuper, r.rolbypassrls,
           coalesce(array_agg(c.relname ORDER BY c.relname)
                    FILTER (WHERE c.oid IS NOT NULL), '{}') AS owned
    FROM pg_roles r
    LEFT JOIN (pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace)
      ON n.nspname = current_schema()
     AND c.relkind IN ('r', 'p')
     AND pg_has_role(r.oid, c.relowner, 'USAGE')
    WHERE r.rolname = current_user
    GROUP BY r.rolname, r.rolsuper, r.rolbypassrls
    """
)


class Defect(StrEnum):
    """Why a role is refused."""

    SUPERUSER = "superuser"
    BYPASSRLS = "bypassrls"
    TABLE_OWNER = "table_owner"
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class RoleDefect:
    """One reason not to start; `message` is the line an operator reads."""

    code: Defect
    role: str
    detail: str = ""

    @property
    def message(self) -> str:
        match self.code:
            case Defect.SUPERUSER:
                what = "is a superuser: row-level security would not apply"
            case Defect.BYPASSRLS:
                what = "has BYPASSRLS: row-level security would not apply"
            case Defect.TABLE_OWNER:
                what = f"owns {self.detail}: an owner can switch row-level security off"
            case Defect.UNCHECKED:
                return (
                    f"role {self.role!r} could not be checked ({self.detail}): "
                    "an unchecked role may bypass row-level security, so start-up is refused"
                )
        return f"role {self.role!r} {what}; {REMEDY}"


def role_defects(database_url: str | URL) -> list[RoleDefect]:
    """What makes the role of `database_url` unfit to serve; empty when fit or not PostgreSQL.

    A database that cannot be asked counts as a defect: unchecked is not safe.
    """
    url = sync_url(database_url)
    if url.get_backend_name() != "postgresql":
        return []
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    )
    try:
        with engine.connect() as connection:
            role, superuser, bypassrls, owned = connection.execute(ROLE_QUERY).one()
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines() or [""]
        return [RoleDefect(Defect.UNCHECKED, url.username or "(default)", reason[0])]
    finally:
        engine.dispose()
    if superuser:  # a superuser bypasses everything; ownership adds nothing to say
        return [RoleDefect(Defect.SUPERUSER, role)]
    defects = [RoleDefect(Defect.BYPASSRLS, role)] if bypassrls else []
    if owned:
        defects.append(RoleDefect(Defect.TABLE_OWNER, role, _tables(list(owned))))
    return defects


def _tables(names: list[str]) -> str:
    more = ", ..." if len(names) > 3 else ""
    return f"{len(names)} table{'s' if len(names) > 1 else ''} ({', '.join(names[:3])}{more})"
