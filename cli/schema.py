"""Migrations, run as the owner; `wfe dev` skips them when its SQLite file is up to date.

Loading Alembic and replaying an upgrade that has nothing to do is a tenth of a warm
`wfe dev`. Beside the database file, a stamp records which migrations (by content) brought
it to which revision; while both still hold, there is nothing to run.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

import persistence
from foundation.settings import Settings

MIGRATIONS = Path(persistence.__file__).parent / "migrations"


def migrate(settings: Settings) -> None:
    """Bring the schema up to date and grant the service role, if it is another role."""
    from persistence import migrate as migrations  # Alembic: only when there is work

    migrations.upgrade(
        settings.effective_admin_database_url,
        service_role=migrations.service_role_of(
            settings.effective_database_url, settings.effective_admin_database_url
        ),
    )


def migrate_unless_current(settings: Settings) -> None:
    """Migrate, unless the stamp says this SQLite file is already where migrations lead."""
    database = _sqlite_file(settings.effective_admin_database_url)
    stamp = database.with_name(database.name + ".migrated") if database else None
    if database and stamp and stamp.exists():
        if stamp.read_text() == _stamp(database):
            return
    migrate(settings)
    if database and stamp:
        stamp.write_text(_stamp(database))


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def _stamp(database: Path) -> str:
    """The migrations' fingerprint and the revision the file is at."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.relative_to(MIGRATIONS).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{digest.hexdigest()} {_revision(database)}\n"


def _revision(database: Path) -> str:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return "none"
    return ",".join(sorted(str(row[0]) for row in rows)) or "none"
