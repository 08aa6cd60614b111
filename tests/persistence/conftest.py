"""Connections to the PostgreSQL test database as the service role and as the owner."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tenancy.database import TenantDatabase
from tests.databases import ThrowawayDatabase


@pytest.fixture(scope="module")
async def service_db(postgres: ThrowawayDatabase) -> AsyncIterator[TenantDatabase]:
    db = TenantDatabase(postgres.service_url, pool_size=2, max_overflow=0)
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
async def owner_db(postgres: ThrowawayDatabase) -> AsyncIterator[TenantDatabase]:
    db = TenantDatabase(postgres.admin_url, pool_size=2, max_overflow=0)
    yield db
    await db.dispose()
