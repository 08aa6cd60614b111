"""Where the database's schema is against where the migrations lead: a server serves only
once they agree."""

from __future__ import annotations

from functools import cache

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.migrate import MIGRATIONS


@cache
def head() -> frozenset[str]:
    """The revisions the migrations lead to (one, unless branches were left unmerged)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


async def current(session: AsyncSession) -> frozenset[str]:
    """The revisions the database says it is at (none before its first migration)."""
    rows = await session.execute(text("SELECT version_num FROM alembic_version"))
    return frozenset(str(row[0]) for row in rows)
