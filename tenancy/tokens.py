"""Bearer token verification: signature, algorithm allowlist and registered claims."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from jwt.exceptions import InvalidTokenError

from foundation.errors import Unauthenticated
from tenancy.jwks import JwksKeySet, JwksUnavailable

REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for, and which tenants and roles it grants."""

    subject: str
    tenants: frozenset[str]
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """What every token must satisfy besides its signature."""

    issuer: str
    audience: str
    leeway_seconds: int = 30
    tenants_claim: str = "tenants"
    roles_claim: str = "roles"

    def __post_init__(self) -> None:
        if not 0 <= self.leeway_seconds <= 60:
            raise ValueError("leeway must be between 0 and 60 seconds")


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


class SharedSecretVerifier:
    """HMAC-signed tokens with one shared secret (development and tests)."""

    def __init__(self, secret: str, rules: ClaimRules, algorithms: Iterable[str] = ("HS256",)):
        self._secret = secret
        self._rules = rules
        self._algorithms = sorted(algorithms)
        if not self._algorithms or any(not a.startswith("HS") for a in self._algorithms):
            raise ValueError("a shared secret verifies HS* algorithms only")

    async def verify(self, token: str) -> Principal:
        header = _header(token)
        if header.get("alg") not in self._algorithms:
            raise Unauthenticated("token algorithm is not accepted")
        return _decode(token, self._secret, [header["alg"]], self._rules)


class JwksVerifier:
    """Tokens signed with RS*/ES* keys published at a JWKS URL (production)."""

    def __init__(self, keys: JwksKeySet, rules: ClaimRules, algorithms: Iterable[str]):
        self._keys = keys
        self._rules = rules
        self._algorithms = frozenset(algorithms)
        if not self._algorithms or any(a.startswith("HS") for a in self._algorithms):
            raise ValueError("JWKS keys verify asymmetric algorithms only")

    async def verify(self, token: str) -> Principal:
        header = _header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in self._algorithms:
            raise Unauthenticated("token algorithm is not accepted")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token names no signing key (kid)")
        try:
            key = await self._keys.key(kid)
        except JwksUnavailable as exc:
            raise Unauthenticated("signing keys are unavailable; try again later") from exc
        if key is None:
            raise Unauthenticated("token is signed with an unknown key")
        # The key decides the algorithm: an RSA key never verifies an HS256 or ES256 token.
        if key.algorithm_name != algorithm:
            raise Unauthenticated("token algorithm does not match its signing key")
        return _decode(token, key.key, [algorithm], self._rules)

    async def aclose(self) -> None:
        await self._keys.aclose()


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except (InvalidTokenError, UnicodeError) as exc:
        raise Unauthenticated("malformed bearer token") from exc
    return header


def _decode(token: str, key: Any, algorithms: list[str], rules: ClaimRules) -> Principal:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=rules.audience,
            issuer=rules.issuer,
            leeway=rules.leeway_seconds,
            options={"require": REQUIRED_CLAIMS, "verify_signature": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise Unauthenticated("token is not valid yet") from exc
    except jwt.InvalidAudienceError as exc:
        raise Unauthenticated("token is not meant for this service (aud)") from exc
    except jwt.InvalidIssuerError as exc:
        raise Unauthenticated("token issuer is not trusted (iss)") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from exc
    except InvalidTokenError as exc:
        raise Unauthenticated("token signature or format is invalid") from exc
    return Principal(
        subject=str(claims["sub"]),
        tenants=_string_set(claims.get(rules.tenants_claim), rules.tenants_claim),
        roles=_string_set(claims.get(rules.roles_claim, []), rules.roles_claim),
    )


def _string_set(value: Any, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Unauthenticated(f"token claim {claim!r} must be a list of strings")
    return frozenset(value)
