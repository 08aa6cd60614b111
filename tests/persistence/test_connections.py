"""Pooled connections: one the server closed while it sat idle is replaced at checkout, so
the next transaction never meets it (and no checkout pays a ping round trip)."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest
from sqlalchemy import text

from foundation.database import _closed_by_server
from tenancy.database import TenantDatabase
from tests.databases import ThrowawayDatabase, _dsn, postgres_admin_url


async def backend_pid(database: TenantDatabase) -> int:
    async with database.transaction(None) as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)


@pytest.mark.postgresql_only
async def test_a_connection_the_server_closed_while_idle_is_replaced_before_a_call_meets_it(
    test_database: ThrowawayDatabase,
) -> None:
    database = TenantDatabase(test_database.service_url, pool_size=1, max_overflow=0)
    try:
        first = await backend_pid(database)
        assert await backend_pid(database) == first  # the pool hands the same one back
        with psycopg.connect(_dsn(postgres_admin_url()), autocommit=True) as superuser:
            superuser.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
        second = await backend_pid(database)  # no error: a new connection took its place
        assert second != first
        assert await backend_pid(database) == second
    finally:
        await database.dispose()


class _Idle:
    """What the checkout looks at on a driver connection: whether it is closed, its socket."""

    def __init__(self, descriptor: int) -> None:
        self.closed = False
        self._descriptor = descriptor

    def fileno(self) -> int:
        return self._descriptor


def test_an_idle_connection_on_a_descriptor_past_1024_is_kept_until_its_peer_closes() -> None:
    ours, peer = socket.socketpair()
    high = os.dup2(ours.fileno(), 1500)  # as on a server holding a thousand streams
    try:
        assert not _closed_by_server(_Idle(high))
        peer.close()
        assert _closed_by_server(_Idle(high))
    finally:
        os.close(high)
        ours.close()
