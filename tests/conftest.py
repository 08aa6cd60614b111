"""Fixtures: every integration test talks to a real server over a real channel.

Tests that take `server` (or anything built on it) run once on SQLite and once on
PostgreSQL. PostgreSQL is skipped when unreachable, except with CI=true.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Final

import grpc
import pytest
from grpc import aio

from engine.dispatch import Publisher
from foundation.settings import Settings
from service.server import RunningServer, start_server
from service.tenants import service as tenants
from tenancy.database import TenantDatabase
from tenancy.dev_tokens import mint_token
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.databases import (
    ThrowawayDatabase,
    postgres_database,
    postgres_unavailable_reason,
    sqlite_database,
)
from tests.effects_stub import Effects, serve_effects
from tests.engine_stack import (
    ENGINE_SETTINGS,
    broker_engine,
    broker_unavailable_reason,
    broker_url,
    unique_queue,
)

SECRET = "test-secret-" + "x" * 40
ISSUER = "wfe-test"
AUDIENCE = "wfe"


def require(reason: str | None, what: str) -> None:
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires {what}: {reason}")
    pytest.skip(reason)


def _require_postgres() -> None:
    require(postgres_unavailable_reason(), "PostgreSQL")


# Tiers, from what a test needs (`make check` runs the fast ones):
# * integration: something started for it (a database, a gRPC or HTTP server, a broker, a
#   subprocess) by any fixture it uses, directly or not; unit: nothing of the sort;
# * postgres: it runs on PostgreSQL; faults: it breaks real processes on purpose;
# * slow: seconds by design, as it starts `wfe`, protoc or buf itself, runs executions
#   against the external-system stub (asks for `effects` itself: slow answers, retries),
#   or tries hundreds of Hypothesis examples.
PROCESS_FIXTURES = frozenset(
    {
        *("wfe_env", "dev_server"),  # tests/test_cli.py: `wfe` processes
        "live_dev",  # tests/cli/conftest.py: one `wfe dev` for the CLI tests
        "readme_dev",  # tests/test_readme_walkthrough.py: the `wfe dev` the README's commands call
        "tool_package",  # tests/engine/test_plugged_tools.py: pip, then `wfe` processes
    }
)
# processes, no fixture
PROCESS_MODULES = frozenset(
    {"test_protos.py", "test_startup.py", "cli/test_imports.py", "cli/test_listening.py"}
)
FAULT_MODULES = frozenset({"engine/test_faults.py"})  # SIGKILLed workers, crashed brokers
INTEGRATION_FIXTURES = frozenset(
    {
        # this file: databases, the effects HTTP server, the engine, the gRPC server
        *("test_database", "postgres", "database", "admin_database", "effects", "engine"),
        *("server", "channel"),  # also tests/workers/test_http_tool.py's HTTP server
        "probe_channel",  # tests/service/test_error_model.py: a gRPC server
        "jwks",  # tests/tenancy/test_jwks.py: a JWKS HTTP server
        *("amqp_channel", "shared_broker", "redis_binary"),  # brokers
        *PROCESS_FIXTURES,
    }
)


ONE_BACKEND_DIRS: Final = ("gateway",)
"""Tests of a gRPC client of the server (the gateway): the database behind the server is
the server's own business, tested on both backends elsewhere; these run on SQLite only."""


def _runs_elsewhere(item: pytest.Item, tests_dir: str) -> bool:
    """Whether this backend's run of a test is left out: the gateway's on PostgreSQL, and
    on SQLite those marked `postgresql_only` (long runs whose point is the same on both)."""
    backend = getattr(getattr(item, "callspec", None), "params", {}).get("test_database")
    if backend == "postgresql":
        return os.path.relpath(item.path, tests_dir).split(os.sep)[0] in ONE_BACKEND_DIRS
    return backend == "sqlite" and item.get_closest_marker("postgresql_only") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = os.path.dirname(__file__)
    twice = [item for item in items if _runs_elsewhere(item, tests_dir)]
    if twice:
        config.hook.pytest_deselected(items=twice)
        dropped = set(twice)
        items[:] = [item for item in items if item not in dropped]
    for item in items:
        module = os.path.relpath(item.path, tests_dir)
        uses = set(getattr(item, "fixturenames", ()))  # with their fixtures' fixtures
        function = getattr(item, "function", None)
        asks = inspect.signature(function).parameters if function else {}  # its own arguments
        params = getattr(getattr(item, "callspec", None), "params", {})
        if module in FAULT_MODULES:
            item.add_marker(pytest.mark.faults)
        if params.get("test_database") == "postgresql" or "postgres" in uses:
            item.add_marker(pytest.mark.postgres)
        processes = bool(uses & PROCESS_FIXTURES) or module in PROCESS_MODULES
        examples = getattr(function, "is_hypothesis_test", False)
        if processes or examples or "effects" in asks or module in FAULT_MODULES:
            item.add_marker(pytest.mark.slow)
        if processes or uses & INTEGRATION_FIXTURES or module in FAULT_MODULES:
            item.add_marker(pytest.mark.integration)
        elif item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThrowawayDatabase]:
    if request.param == "postgresql":
        _require_postgres()
        with postgres_database() as created:
            yield created
    else:
        with sqlite_database(tmp_path_factory.mktemp("sqlite")) as created:
            yield created


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayDatabase]:
    """A PostgreSQL test database, for tests about PostgreSQL itself (RLS, roles)."""
    _require_postgres()
    with postgres_database() as created:
        yield created


@pytest.fixture(scope="session")
async def database(test_database: ThrowawayDatabase) -> AsyncIterator[TenantDatabase]:
    db = TenantDatabase(test_database.service_url, pool_size=5, max_overflow=5)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def admin_database(test_database: ThrowawayDatabase) -> AsyncIterator[TenantDatabase]:
    db = TenantDatabase(test_database.admin_url, pool_size=2, max_overflow=2)
    yield db
    await db.dispose()


def server_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "listen_address": "127.0.0.1:0",
        "shutdown_grace_seconds": 1.0,
        "stream_heartbeat_seconds": 0.5,  # an idle stream answers within a read's patience
        **ENGINE_SETTINGS,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def ports(effects: Effects) -> frozenset[int]:
    return frozenset({80, 443, effects.port})


@pytest.fixture(scope="session")
def effects() -> Iterator[Effects]:
    """The external system steps call; its port is one the engine may reach."""
    with serve_effects() as running:
        yield running


@pytest.fixture(scope="session")
async def engine(
    test_database: ThrowawayDatabase,
    database: TenantDatabase,
    effects: Effects,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Publisher]:
    """The execution engine behind the server; yields the server's publisher.

    SQLite: embedded, as `wfe dev` runs it. PostgreSQL: a real `wfe worker` process
    and `wfe beat` on a real broker.
    """
    if test_database.backend == "sqlite":
        from workers.embedded import EmbeddedEngine

        embedded = EmbeddedEngine(server_settings(http_allowed_ports=ports(effects)), database)
        await embedded.start()
        yield embedded.publisher
        await embedded.stop()
        return
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    settings = server_settings(
        broker_url=url, queue_name=unique_queue(), http_allowed_ports=ports(effects)
    )
    with broker_engine(settings, test_database.service_url, tmp_path_factory.mktemp("workers")) as (
        publisher,
        _,
    ):
        yield publisher


@pytest.fixture(scope="session")
async def server(database: TenantDatabase, engine: Publisher) -> AsyncIterator[RunningServer]:
    settings = server_settings()
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    running = await start_server(settings, database, verifier, engine)
    yield running
    await running.stop(0)


@pytest.fixture(scope="session")
async def channel(server: RunningServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


NewTenant = Callable[..., Awaitable[str]]


@pytest.fixture
def new_tenant(admin_database: TenantDatabase) -> NewTenant:
    """Registers a fresh tenant (unique id) and returns its id."""

    async def create(tier: str = "free", overrides: dict[str, Any] | None = None) -> str:
        tenant_id = f"t-{uuid.uuid4().hex[:12]}"
        async with admin_database.transaction(None) as session:
            await tenants.create(session, tenant_id, f"Tenant {tenant_id}", tier, overrides)
        return tenant_id

    return create


def token(
    tenants_: list[str], *, roles: list[str] | None = None, subject: str = "user-1", **kw: Any
) -> str:
    return mint_token(
        SECRET,
        tenants=tenants_,
        roles=roles or [],
        subject=subject,
        issuer=ISSUER,
        audience=AUDIENCE,
        **kw,
    )


def auth(
    tenant_id: str, *, bearer: str | None = None, roles: list[str] | None = None
) -> tuple[tuple[str, str], ...]:
    """Call metadata for `tenant_id` with a token granting it with `roles` (or the given one)."""
    return (
        ("authorization", f"Bearer {bearer or token([tenant_id], roles=roles)}"),
        ("x-tenant-id", tenant_id),
    )


def error_info(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The status code, ErrorInfo reason and metadata of a failed call."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    assert isinstance(error, aio.AioRpcError)
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "wfe"
            return error.code(), info.reason, dict(info.metadata)
    raise AssertionError("the error carries no ErrorInfo")
