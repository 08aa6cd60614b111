"""Development tokens: a per-machine HS256 secret and tokens signed with it.

Only for the embedded development mode and tests; production verifies tokens from
an identity provider's JWKS and never mints any.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import jwt

SECRET_FILE = "dev-jwt-secret"


def dev_secret(data_dir: Path) -> str:
    """The development secret kept in `data_dir`, created on first use."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def mint_token(
    secret: str,
    *,
    tenants: Iterable[str],
    subject: str = "dev-user",
    roles: Iterable[str] = (),
    ttl_seconds: int = 3600,
    issuer: str = "wfe-dev",
    audience: str = "wfe",
    tenants_claim: str = "tenants",
    roles_claim: str = "roles",
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
        tenants_claim: sorted(set(tenants)),
        roles_claim: sorted(set(roles)),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
