"""The `wfe` command: run the service, migrate, mint dev tokens, administer tenants."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError

from cli.workflows import workflow_app
from foundation.errors import WfeError
from foundation.settings import Settings, UnknownSettings, from_environment
from persistence import migrate as migrations
from persistence import preflight
from service import logs
from service.server import run_until_signalled, start_server
from service.tenants import service as tenants
from tenancy.database import TenantDatabase
from tenancy.dev_tokens import dev_secret, mint_token
from tenancy.verifiers import verifier_for

app = typer.Typer(
    help="wfe: a multi-tenant workflow engine served over gRPC.", no_args_is_help=True
)
tenant_app = typer.Typer(
    help="Administer tenants (uses WFE_ADMIN_DATABASE_URL).", no_args_is_help=True
)
app.add_typer(tenant_app, name="tenant")
app.add_typer(workflow_app, name="workflow")

DEMO_TENANTS = (
    ("demo-free", "Demo (Free)", "free"),
    ("demo-pro", "Demo (Professional)", "professional"),
    ("demo-enterprise", "Demo (Enterprise)", "enterprise"),
)
DURATION = re.compile(r"^(\d+)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
REFUSED = 2  # exit code of every start-up refusal: the one click gives a bad setting value


def _settings(**overrides: Any) -> Settings:
    try:
        return from_environment(**overrides)
    except (ValidationError, UnknownSettings) as exc:
        raise typer.BadParameter(str(exc)) from exc


def _refuse_unsafe_role(settings: Settings) -> None:
    """Stop before serving if the database role would slip past row-level security."""
    defects = preflight.role_defects(settings.effective_database_url)
    for defect in defects:
        typer.echo(defect.message, err=True)
    if defects:
        raise typer.Exit(REFUSED)


def _seconds(text: str) -> int:
    match = DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 900, 15m, 12h or 7d")
    return int(match.group(1)) * UNITS[match.group(2)]


def _overrides(pairs: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"override {pair!r} must be NAME=VALUE")
        parsed[name.strip()] = None if value.strip() in ("", "unlimited", "null") else int(value)
    return parsed


def _migrate(settings: Settings) -> None:
    migrations.upgrade(
        settings.effective_admin_database_url,
        service_role=migrations.service_role_of(
            settings.effective_database_url, settings.effective_admin_database_url
        ),
    )


async def _admin(settings: Settings, work: Any) -> Any:
    database = TenantDatabase(settings.effective_admin_database_url, pool_size=1, max_overflow=0)
    try:
        async with database.transaction(None) as session:
            return await work(session)
    except WfeError as error:
        raise typer.BadParameter(error.message) from error
    finally:
        await database.dispose()


async def _serve(settings: Settings, *, embedded: bool = False) -> None:
    """Serve; `embedded` also runs the engine in this process on an in-memory broker."""
    from workers.app import create_app
    from workers.embedded import EmbeddedEngine
    from workers.publisher import BackgroundPublisher, CeleryPublisher

    database = TenantDatabase(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    local = EmbeddedEngine(settings, database) if embedded else None
    publisher = (
        local.publisher if local else BackgroundPublisher(CeleryPublisher(create_app(settings)))
    )
    if local is not None:
        await local.start()
    running = await start_server(settings, database, verifier_for(settings), publisher)
    typer.echo(f"wfe listening on {settings.listen_address.rsplit(':', 1)[0]}:{running.port}")
    try:
        await run_until_signalled(running, settings.shutdown_grace_seconds)
    finally:
        if local is not None:
            await local.stop()
        await database.dispose()


@app.command()
def serve() -> None:
    """Run the gRPC service as configured by WFE_* variables."""
    settings = _settings()
    _refuse_unsafe_role(settings)
    logs.configure(settings.log_level)
    asyncio.run(_serve(settings))


@app.command()
def migrate() -> None:
    """Apply database migrations as the owner role and grant the service role."""
    settings = _settings()
    _migrate(settings)
    typer.echo("database is at the latest schema")


@app.command()
def dev(
    address: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:50051",
) -> None:
    """Run everything embedded: SQLite file, migrations, demo tenants, dev tokens, and the
    engine with an in-process worker (no broker or database server needed)."""
    base = _settings()
    secret = base.jwt_secret or SecretStr(dev_secret(base.data_dir))
    settings = _settings(listen_address=address, jwt_secret=secret, jwt_jwks_url=None)
    logs.configure(settings.log_level)
    _migrate(settings)

    async def ensure_demo_tenants(session: Any) -> None:
        existing = {t.id for t in await tenants.list_all(session)}
        for tenant_id, name, tier in DEMO_TENANTS:
            if tenant_id not in existing:
                await tenants.create(session, tenant_id, name, tier)

    asyncio.run(_admin(settings, ensure_demo_tenants))
    typer.echo(f"database: {settings.effective_database_url}")
    for tenant_id, _, tier in DEMO_TENANTS:
        token = mint_token(
            secret.get_secret_value(),
            tenants=[tenant_id],
            roles=["admin"],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=12 * 3600,
        )
        typer.echo(
            f"\n# {tenant_id} ({tier}), valid 12 h:\nexport WFE_TOKEN_{tier.upper()}={token}"
        )
    typer.echo(
        "\nTry it:\n"
        f'  grpcurl -plaintext -H "authorization: Bearer $WFE_TOKEN_FREE" '
        f"-H 'x-tenant-id: demo-free' {address} wfe.v1.TenantService/GetTenant\n"
    )
    asyncio.run(_serve(settings, embedded=True))


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="step tasks at once (default WFE_WORKER_CONCURRENCY)")
    ] = None,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo")] = "prefork",
    name: Annotated[str, typer.Option(help="worker node name")] = "wfe@%h",
) -> None:
    """Run a Celery worker that executes step tasks from WFE_BROKER_URL."""
    from workers.app import create_app

    settings = _settings()
    _refuse_unsafe_role(settings)
    logs.configure(settings.log_level)
    celery = create_app(settings)
    celery.worker_main(
        [
            "worker",
            f"--queues={settings.queue_name}",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--pool={pool}",
            f"--hostname={name}",
            f"--loglevel={settings.log_level}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


@app.command()
def beat() -> None:
    """Run the periodic jobs: the sweeper (re-publishes overdue steps) and the history purge."""
    from workers.app import create_app

    settings = _settings()
    _refuse_unsafe_role(settings)
    logs.configure(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery = create_app(settings)
    celery.Beat(
        schedule=str(settings.data_dir / "beat-schedule"),
        loglevel=settings.log_level,
        max_interval=min(settings.sweep_interval_seconds, 5.0),
    ).run()


@app.command()
def token(
    tenant: Annotated[list[str], typer.Option("--tenant", help="tenant to grant (repeatable)")],
    role: Annotated[list[str] | None, typer.Option("--role", help="role, e.g. admin")] = None,
    user: Annotated[str, typer.Option("--user", help="the token's subject")] = "dev-user",
    ttl: Annotated[str, typer.Option("--ttl", help="lifetime: 900, 15m, 12h, 7d")] = "1h",
) -> None:
    """Print a development token signed with the dev secret."""
    settings = _settings()
    if settings.jwt_jwks_url:
        raise typer.BadParameter("tokens are minted for the development secret only")
    secret = settings.jwt_secret or SecretStr(dev_secret(settings.data_dir))
    typer.echo(
        mint_token(
            secret.get_secret_value(),
            tenants=tenant,
            roles=role or [],
            subject=user,
            ttl_seconds=_seconds(ttl),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            tenants_claim=settings.jwt_tenants_claim,
            roles_claim=settings.jwt_roles_claim,
        )
    )


@tenant_app.command("create")
def tenant_create(
    tenant_id: Annotated[str, typer.Argument(help="lowercase id, as sent in x-tenant-id")],
    name: Annotated[str, typer.Option(help="display name")] = "",
    tier: Annotated[str, typer.Option(help="free, professional or enterprise")] = "free",
    override: Annotated[list[str] | None, typer.Option(help="enterprise LIMIT=N")] = None,
) -> None:
    """Register a tenant."""
    settings = _settings()

    async def work(session: Any) -> None:
        await tenants.create(session, tenant_id, name, tier, _overrides(override or []))

    asyncio.run(_admin(settings, work))
    typer.echo(f"created tenant {tenant_id} ({tier})")


@tenant_app.command("list")
def tenant_list() -> None:
    """List tenants as JSON lines."""
    settings = _settings()

    async def work(session: Any) -> list[dict[str, Any]]:
        return [
            {
                "id": t.id,
                "name": t.name,
                "tier": t.tier,
                "overrides": t.limit_overrides,
                "created_at": t.created_at.isoformat(),
            }
            for t in await tenants.list_all(session)
        ]

    for row in asyncio.run(_admin(settings, work)):
        typer.echo(json.dumps(row))


@tenant_app.command("set-tier")
def tenant_set_tier(
    tenant_id: str,
    tier: str,
    override: Annotated[list[str] | None, typer.Option(help="enterprise LIMIT=N")] = None,
) -> None:
    """Move a tenant to another tier (overrides: Enterprise only)."""
    settings = _settings()

    async def work(session: Any) -> None:
        await tenants.set_tier(session, tenant_id, tier, _overrides(override or []))

    asyncio.run(_admin(settings, work))
    typer.echo(f"tenant {tenant_id} is now {tier}")


if __name__ == "__main__":
    app()
