"""Token settings that would weaken authentication stop the service from starting."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import server_settings

JWKS_URL = "https://idp.example/.well-known/jwks.json"
JWKS_ONLY: dict[str, Any] = {"jwt_secret": None, "jwt_jwks_url": JWKS_URL}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({**JWKS_ONLY, "jwt_algorithms": "HS256"}, "HS\\* algorithms cannot be used"),
        ({**JWKS_ONLY, "jwt_algorithms": "RS256,HS512"}, "HS\\* algorithms cannot be used"),
        ({"jwt_algorithms": "RS256"}, "need WFE_JWT_JWKS_URL"),
        ({"jwt_algorithms": "ES256"}, "need WFE_JWT_JWKS_URL"),
        ({"jwt_algorithms": "none"}, "'none' algorithm is never accepted"),
        ({"jwt_algorithms": "HS256, None"}, "'none' algorithm is never accepted"),
        ({**JWKS_ONLY, "jwt_algorithms": "RS256,none"}, "'none' algorithm is never accepted"),
        ({"jwt_algorithms": frozenset({"none"})}, "unsupported JWT algorithms"),
        ({"jwt_jwks_url": JWKS_URL}, "not both"),
        ({"jwt_leeway_seconds": 61}, "less than or equal to 60"),
        ({"jwt_leeway_seconds": -1}, "greater than or equal to 0"),
        ({"jwt_secret": "short"}, "at least 32 characters"),
    ],
    ids=[
        "hs256-with-jwks",
        "hs512-among-jwks",
        "rs256-without-jwks",
        "es256-without-jwks",
        "none",
        "none-among-hs256",
        "none-among-rs256",
        "lowercase-none-set",
        "secret-and-jwks",
        "leeway-61",
        "leeway-negative",
        "short-secret",
    ],
)
def test_unsafe_token_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        server_settings(**overrides)


def test_none_algorithm_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_JWT_ALGORITHMS", " none ")
    with pytest.raises(ValidationError, match="'none' algorithm is never accepted"):
        server_settings()


def test_default_algorithms_follow_the_key_source() -> None:
    assert server_settings().accepted_algorithms == {"HS256"}
    assert server_settings(**JWKS_ONLY).accepted_algorithms == {"RS256", "ES256"}
    assert server_settings(jwt_leeway_seconds=60).jwt_leeway_seconds == 60
