"""`wfe token` and `wfe env`: development tokens, bare or as the shell line that uses them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Final

import typer

from cli.demo import TOKEN_HOURS, demo_tenant
from cli.shell import client_address, export_line

if TYPE_CHECKING:
    from foundation.settings import Settings

DURATION: Final = re.compile(r"^(\d+)([smhd]?)$")
UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

Ttl = Annotated[str, typer.Option("--ttl", help="lifetime: 900, 15m, 12h, 7d")]


def seconds(text: str) -> int:
    match = DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 900, 15m, 12h or 7d")
    return int(match.group(1)) * UNITS[match.group(2)]


def mint(
    settings: Settings,
    tenants: Iterable[str],
    roles: Iterable[str],
    ttl_seconds: int,
    subject: str = "dev-user",
) -> str:
    """A token signed with the development secret, with the claims `settings` expect."""
    from tenancy.dev_tokens import dev_secret, mint_token

    if settings.jwt_jwks_url:
        raise typer.BadParameter("tokens are minted for the development secret only")
    secret = settings.jwt_secret
    return mint_token(
        secret.get_secret_value() if secret else dev_secret(settings.data_dir),
        tenants=tenants,
        roles=roles,
        subject=subject,
        ttl_seconds=ttl_seconds,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        tenants_claim=settings.jwt_tenants_claim,
        roles_claim=settings.jwt_roles_claim,
    )


def token(
    tenant: Annotated[list[str], typer.Option("--tenant", help="tenant to grant (repeatable)")],
    role: Annotated[list[str] | None, typer.Option("--role", help="role, e.g. admin")] = None,
    user: Annotated[str, typer.Option("--user", help="the token's subject")] = "dev-user",
    ttl: Ttl = "1h",
) -> None:
    """Print a development token signed with the dev secret."""
    from cli import config

    typer.echo(mint(config.load(), tenant, role or [], seconds(ttl), subject=user))


def env(
    tenant: Annotated[str | None, typer.Option(help="the tenant to act as")] = None,
    tier: Annotated[
        str | None, typer.Option(help="or the demo tenant of this tier (free, professional, ...)")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(envvar="WFE_ADDRESS", help="host:port; default: from WFE_LISTEN_ADDRESS"),
    ] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="default: admin")] = None,
    ttl: Ttl = f"{TOKEN_HOURS}h",
) -> None:
    """Print the line that makes `wfe` commands act as a tenant:
    eval "$(wfe env --tenant demo-pro)"."""
    from cli import config

    if (tenant is None) == (tier is None):
        raise typer.BadParameter("give one of them", param_hint="--tenant / --tier")
    tenant_id = tenant if tenant is not None else demo_tenant(str(tier))
    settings = config.load()
    bearer = mint(settings, [tenant_id], role or ["admin"], seconds(ttl))
    typer.echo(f"# {tenant_id}, token valid {ttl}")
    typer.echo(export_line(address or client_address(settings.listen_address), tenant_id, bearer))
