"""SharedSecretVerifier.verify on hostile input: a Principal or Unauthenticated, nothing else."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.errors import Unauthenticated
from tenancy.tokens import ClaimRules, Principal, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, token

VERIFIER = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
TENANTS = ["t-alpha", "t-beta"]
EXPECTED = Principal(
    subject="user-7", tenants=frozenset(TENANTS), roles=frozenset({"admin", "viewer"})
)
VALID = token(TENANTS, roles=["viewer", "admin"], subject="user-7")
TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ !é\x00"
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis directory in the project
    suppress_health_check=[HealthCheck.too_slow],
)


def verify(text: str) -> Principal | Unauthenticated:
    """What verify returns or raises for `text`; any other exception fails the test."""
    try:
        return asyncio.run(VERIFIER.verify(text))
    except Unauthenticated as error:
        return error


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The valid token after 1 to 4 random edits of its characters or segment order."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(TOKEN_CHARS))
        edit = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]))
        if edit == "replace":
            text = text[:where] + char + text[where + 1 :]
        elif edit == "insert":
            text = text[:where] + char + text[where:]
        elif edit == "delete":
            text = text[:where] + text[where + 1 :]
        elif edit == "truncate":
            text = text[:where]
        else:
            text = ".".join(draw(st.permutations(text.split("."))))
    return text


def test_the_valid_token_verifies_to_its_principal() -> None:
    assert verify(VALID) == EXPECTED


@PROPERTY
@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_as_unauthenticated(text: str) -> None:
    assert isinstance(verify(text), Unauthenticated)


@PROPERTY
@given(st.lists(st.text(st.sampled_from(TOKEN_CHARS), max_size=120), min_size=1, max_size=5))
def test_dotted_garbage_is_refused_as_unauthenticated(segments: list[str]) -> None:
    assert isinstance(verify(".".join(segments)), Unauthenticated)


@PROPERTY
@given(mutated())
def test_a_mutated_token_is_refused_or_means_exactly_the_same(text: str) -> None:
    """base64url decoding tolerates a few cosmetic edits (padding, unused low bits);
    those may verify, but only ever to the original token's Principal."""
    outcome = verify(text)
    if text == VALID:
        assert outcome == EXPECTED
    else:
        assert outcome == EXPECTED or isinstance(outcome, Unauthenticated)


def test_token_with_a_lone_surrogate_is_unauthenticated() -> None:
    assert isinstance(verify("\ud800" + VALID), Unauthenticated)
