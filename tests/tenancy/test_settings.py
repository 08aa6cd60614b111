"""Token settings that would weaken authentication stop the service from starting."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from foundation.settings import UnknownSettings, from_environment, unknown_settings
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


REPOSITORY = Path(__file__).resolve().parents[2]
# Files that spell settings wrong on purpose.
MISSPELLING_TESTS = {Path(__file__).resolve(), REPOSITORY / "tests" / "test_startup.py"}


def wfe_names_in_the_repository() -> set[str]:
    """Every `WFE_` name the code, Makefile and docs spell out (not prefixes like `WFE_TEST_*`)."""
    names: set[str] = set()
    for directory, subdirectories, files in os.walk(REPOSITORY):
        subdirectories[:] = [
            d for d in subdirectories if not d.startswith(".") and not d.endswith(".egg-info")
        ]
        for name in files:
            path = Path(directory, name)
            if (path.suffix in (".py", ".md") or name == "Makefile") and (
                path not in MISSPELLING_TESTS
            ):
                names |= set(re.findall(r"\bWFE_[A-Z0-9_]*[A-Z0-9]\b(?!_)", path.read_text()))
    return names


def test_every_wfe_variable_the_repository_reads_is_known() -> None:
    names = wfe_names_in_the_repository()
    assert {"WFE_DATABASE_URL", "WFE_ADDRESS", "WFE_TEST_DATABASE_URL"} <= names
    assert unknown_settings(dict.fromkeys(names, "x")) == []


def test_a_misspelt_variable_is_refused_naming_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WFE_DATABSE_URL", "postgresql+psycopg://wfe_service@db/wfe")
    monkeypatch.setenv("wfe_jwt_secreet", "x" * 32)
    with pytest.raises(UnknownSettings) as refused:
        from_environment()
    assert refused.value.code == "unknown_setting"
    assert [(u.name, u.suggestion) for u in refused.value.unknown] == [
        ("WFE_DATABSE_URL", "WFE_DATABASE_URL"),
        ("wfe_jwt_secreet", "WFE_JWT_SECRET"),
    ]
    assert str(refused.value).splitlines()[0] == (
        "unknown setting WFE_DATABSE_URL; did you mean WFE_DATABASE_URL?"
    )


def test_unknown_variables_without_a_close_setting_get_no_guess() -> None:
    [unknown] = unknown_settings({"WFE_FOO": "1", "HOME": "/root", "WFE_ADDRESS": "h:1"})
    assert unknown.message == "unknown setting WFE_FOO; see README.md"


def test_settings_match_names_case_insensitively_as_pydantic_does() -> None:
    assert unknown_settings({"wfe_database_url": "x", "Wfe_Token_Free": "t"}) == []
