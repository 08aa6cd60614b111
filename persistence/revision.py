"""Where the database's schema is against where the migrations lead: a server serves only
once they agree."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MIGRATIONS: Final = Path(__file__).parent / "migrations"
"""The Alembic scripts (`persistence.migrate` runs them; this module only reads their text,
so a server that checks its schema never loads Alembic)."""


@cache
def head() -> frozenset[str]:
    """The revisions the migrations lead to (one, unless branches were left unmerged): those
    no other names as its `down_revision`. Read from the scripts' text, so a server never
    loads Alembic to know it."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        text_ = script.read_text(encoding="utf-8")
        found = _REVISION.search(text_)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(text_)
        if down is not None:
            parents.update(_PARENTS.findall(down.group(1)))
    return frozenset(revisions - parents)


_REVISION: Final = re.compile(r"^revision\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN: Final = re.compile(r"^down_revision\s*=\s*(.+)$", re.MULTILINE)
_PARENTS: Final = re.compile(r"[\"']([^\"']+)[\"']")


async def current(session: AsyncSession) -> frozenset[str]:
    """The revisions the database says it is at (none before its first migration)."""
    rows = await session.execute(text("SELECT version_num FROM alembic_version"))
    return frozenset(str(row[0]) for row in rows)
