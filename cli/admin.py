"""Tenant administration on the database, as the owner role (WFE_ADMIN_DATABASE_URL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from cli import config
from engine.tools import installed
from foundation.errors import WfeError
from foundation.settings import Settings
from service.tenants import service as tenants
from tenancy.database import TenantDatabase

T = TypeVar("T")


async def run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`work` in one owner transaction; a refusal (e.g. a taken id) is a usage error."""
    database = TenantDatabase(settings.effective_admin_database_url, pool_size=1, max_overflow=0)
    try:
        async with database.transaction(None) as session:
            return await work(session)
    except WfeError as error:
        raise typer.BadParameter(error.message) from error
    finally:
        await database.dispose()


def overrides(pairs: list[str]) -> dict[str, Any]:
    """Enterprise limit overrides from `LIMIT=N` (empty, `unlimited` or `null`: no limit)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"override {pair!r} must be NAME=VALUE")
        if value.strip() in ("", "unlimited", "null"):
            parsed[name.strip()] = None
        elif value.strip().isdigit():
            parsed[name.strip()] = int(value)
        else:
            raise typer.BadParameter(f"override {pair!r}: the limit must be a whole number")
    return parsed


def create(tenant_id: str, name: str, tier: str, limits: list[str]) -> None:
    parsed = overrides(limits)
    asyncio.run(run(config.load(), lambda s: tenants.create(s, tenant_id, name, tier, parsed)))


def set_tier(tenant_id: str, tier: str, limits: list[str]) -> None:
    parsed = overrides(limits)
    asyncio.run(run(config.load(), lambda s: tenants.set_tier(s, tenant_id, tier, parsed)))


def set_adapters(tenant_id: str, names: list[str]) -> None:
    asyncio.run(run(config.load(), lambda s: tenants.set_adapters(s, tenant_id, names)))


def rows() -> list[dict[str, Any]]:
    """Every tenant as a JSON-ready row."""

    async def listed(session: AsyncSession) -> list[dict[str, Any]]:
        return [
            {
                "id": t.id,
                "name": t.name,
                "tier": t.tier,
                "overrides": t.limit_overrides,
                "adapters": t.adapters,
                "created_at": t.created_at.isoformat(),
            }
            for t in await tenants.list_all(session)
        ]

    return asyncio.run(run(config.load(), listed))


async def ensure(session: AsyncSession, wanted: tuple[tuple[str, str, str], ...]) -> None:
    """Register each (id, name, tier) of `wanted` that does not exist yet."""
    existing = {t.id for t in await tenants.list_all(session)}
    for tenant_id, name, tier in wanted:
        if tenant_id not in existing:
            # An Enterprise demo tenant may call every installed adapter.
            adapters = [s.name for s in installed().specs() if s.adapter]
            await tenants.create(
                session, tenant_id, name, tier, adapters=adapters if tier == "enterprise" else ()
            )
