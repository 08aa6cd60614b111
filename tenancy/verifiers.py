"""Builds the token verifier the settings call for."""

from __future__ import annotations

from foundation.settings import Settings
from tenancy.jwks import JwksKeySet
from tenancy.tokens import ClaimRules, JwksVerifier, SharedSecretVerifier, TokenVerifier


def claim_rules(settings: Settings) -> ClaimRules:
    return ClaimRules(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        tenants_claim=settings.jwt_tenants_claim,
        roles_claim=settings.jwt_roles_claim,
    )


def verifier_for(settings: Settings) -> TokenVerifier:
    """HS256 with WFE_JWT_SECRET, or RS256/ES256 with keys from WFE_JWT_JWKS_URL."""
    rules = claim_rules(settings)
    if settings.jwt_jwks_url:
        keys = JwksKeySet(
            settings.jwt_jwks_url,
            cache_seconds=settings.jwks_cache_seconds,
            min_refresh_seconds=settings.jwks_min_refresh_seconds,
            timeout_seconds=settings.jwks_timeout_seconds,
        )
        return JwksVerifier(keys, rules, settings.accepted_algorithms)
    if settings.jwt_secret is None:
        raise ValueError("set WFE_JWT_SECRET (development) or WFE_JWT_JWKS_URL (production)")
    return SharedSecretVerifier(
        settings.jwt_secret.get_secret_value(), rules, settings.accepted_algorithms
    )
