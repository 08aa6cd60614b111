"""Throwaway databases for one test run: an SQLite file, or a PostgreSQL database with roles.

PostgreSQL gets two fresh roles per run, as in production: an owner that migrates,
and a service role that owns nothing and is neither superuser nor BYPASSRLS. Both
and the database are dropped at the end, so parallel runs never meet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from persistence.migrate import upgrade

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class ThrowawayDatabase:
    backend: str
    service_url: str
    admin_url: str
    service_role: str | None = None
    owner_role: str | None = None


def postgres_admin_url() -> str:
    return os.environ.get("WFE_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)


def postgres_unavailable_reason() -> str | None:
    url = make_url(postgres_admin_url())
    try:
        with psycopg.connect(_dsn(url), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {url.render_as_string(hide_password=True)} unreachable: {exc}"


def _dsn(url: object) -> str:
    parsed = make_url(str(url) if not hasattr(url, "render_as_string") else url)  # type: ignore[arg-type]
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def sqlite_database(directory: Path) -> Iterator[ThrowawayDatabase]:
    url = f"sqlite+aiosqlite:///{directory / 'wfe-test.db'}"
    upgrade(url)
    yield ThrowawayDatabase("sqlite", url, url)


@contextmanager
def postgres_database() -> Iterator[ThrowawayDatabase]:
    base = make_url(postgres_admin_url())
    suffix = uuid.uuid4().hex[:10]
    name, owner, service = f"wfe_t_{suffix}", f"wfe_t_{suffix}_owner", f"wfe_t_{suffix}_svc"
    with psycopg.connect(_dsn(base), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER NOBYPASSRLS')
        admin.execute(f'CREATE ROLE "{service}" LOGIN NOSUPERUSER NOBYPASSRLS')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    admin_url = base.set(username=owner, password=None, database=name)
    service_url = base.set(username=service, password=None, database=name)
    try:
        admin_text = admin_url.render_as_string(hide_password=False)
        upgrade(admin_text, service_role=service)
        yield ThrowawayDatabase(
            "postgresql",
            service_url.render_as_string(hide_password=False),
            admin_text,
            service_role=service,
            owner_role=owner,
        )
    finally:
        with psycopg.connect(_dsn(base), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{service}"')
            admin.execute(f'DROP ROLE IF EXISTS "{owner}"')
