"""The demo tenants `wfe dev` registers, and what it prints so a person can use them."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import typer

from cli.shell import export_line

# (tenant id, display name, tier)
DEMO_TENANTS: Final = (
    ("demo-free", "Demo (Free)", "free"),
    ("demo-pro", "Demo (Professional)", "professional"),
    ("demo-enterprise", "Demo (Enterprise)", "enterprise"),
)
TOKEN_HOURS: Final = 12


def demo_tenant(tier: str) -> str:
    """The demo tenant on `tier`; a usage error for an unknown tier."""
    for tenant_id, _, its_tier in DEMO_TENANTS:
        if its_tier == tier.lower():
            return tenant_id
    tiers = ", ".join(t for _, _, t in DEMO_TENANTS)
    raise typer.BadParameter(f"{tier!r} is not one of {tiers}", param_hint="--tier")


def banner(address: str, database_url: str, tokens: Mapping[str, str]) -> str:
    """Per demo tenant, the line to paste; then commands to try with it."""
    wfe = _command()
    blocks = [
        f"# {tenant_id} ({tier})\n{export_line(address, tenant_id, tokens[tenant_id])}"
        for tenant_id, _, tier in DEMO_TENANTS
    ]
    return "\n".join(
        [
            f"database: {database_url}",
            "",
            f"Paste one line into another shell to act as that tenant "
            f"(admin tokens, valid {TOKEN_HOURS} h):",
            "",
            "\n\n".join(blocks),
            "",
            "Then try:",
            f"  {wfe} tenant info",
            f"  {wfe} template list",
            '  grpcurl -plaintext -H "authorization: Bearer $WFE_TOKEN" '
            '-H "x-tenant-id: $WFE_TENANT" "$WFE_ADDRESS" wfe.v1.TenantService/GetTenant',
            f'Switch tenants with: eval "$({wfe} env --tenant demo-pro)"',
            "",
        ]
    )


def _command() -> str:
    """`wfe` as this process was started (`.venv/bin/wfe` under make), else plain `wfe`."""
    started = Path(sys.argv[0])
    return shlex.quote(str(started)) if started.name == "wfe" else "wfe"
