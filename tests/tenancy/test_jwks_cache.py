"""JwksKeySet caching, on a mock transport and a hand-driven clock (no waiting)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tenancy.jwks import JwksKeySet, JwksUnavailable

URL = "https://idp.example/.well-known/jwks.json"


def rsa_jwk(kid: str) -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def ec_jwk(kid: str) -> dict[str, Any]:
    private = ec.generate_private_key(ec.SECP256R1())
    return {**ECAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": kid}


RSA_JWK = rsa_jwk("rsa-1")
EC_JWK = ec_jwk("ec-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class KeyServer:
    """What the mock transport answers; `down` makes every request fail."""

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.document: Any = {"keys": list(jwks)}
        self.requests = 0
        self.down: Callable[[], httpx.Response] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert str(request.url) == URL
        if self.down is not None:
            return self.down()
        return httpx.Response(200, json=self.document)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def idp() -> KeyServer:
    return KeyServer(RSA_JWK, EC_JWK)


@pytest.fixture
async def key_set(idp: KeyServer, clock: Clock) -> AsyncIterator[JwksKeySet]:
    keys = JwksKeySet(
        URL,
        cache_seconds=300,
        min_refresh_seconds=30,
        transport=httpx.MockTransport(idp),
        clock=clock,
    )
    yield keys
    await keys.aclose()


def connection_refused() -> httpx.Response:
    raise httpx.ConnectError("connection refused")


def server_error() -> httpx.Response:
    return httpx.Response(503, text="unavailable")


async def test_keys_are_cached_for_the_ttl_then_refetched(
    key_set: JwksKeySet, idp: KeyServer, clock: Clock
) -> None:
    first = await key_set.key("rsa-1")
    assert first is not None and first.algorithm_name == "RS256"
    assert await key_set.key("ec-1") is not None
    clock.now += 299
    assert await key_set.key("rsa-1") is not None
    assert idp.requests == 1

    clock.now += 2
    assert await key_set.key("rsa-1") is not None
    assert idp.requests == 2


async def test_a_refetch_after_the_ttl_picks_up_new_keys(
    key_set: JwksKeySet, idp: KeyServer, clock: Clock
) -> None:
    assert await key_set.key("rsa-1") is not None
    idp.document = {"keys": [EC_JWK]}
    clock.now += 301
    assert await key_set.key("ec-1") is not None
    assert await key_set.key("rsa-1") is None


async def test_unknown_kid_refetches_at_most_once_per_min_refresh(
    key_set: JwksKeySet, idp: KeyServer, clock: Clock
) -> None:
    assert await key_set.key("rsa-1") is not None
    for kid in ("a", "b", "c"):
        assert await key_set.key(kid) is None
    assert idp.requests == 1
    clock.now += 30
    assert await key_set.key("d") is None
    assert idp.requests == 2


@pytest.mark.parametrize("failure", [connection_refused, server_error])
async def test_stale_keys_are_served_while_refreshes_fail(
    key_set: JwksKeySet,
    idp: KeyServer,
    clock: Clock,
    failure: Callable[[], httpx.Response],
) -> None:
    assert await key_set.key("rsa-1") is not None
    idp.down = failure
    clock.now += 301
    stale = await key_set.key("rsa-1")
    assert stale is not None and stale.algorithm_name == "RS256"
    assert idp.requests == 2

    clock.now += 10
    assert await key_set.key("rsa-1") is not None
    assert idp.requests == 2, "a failed refresh is not retried before min_refresh"
    clock.now += 30
    assert await key_set.key("rsa-1") is not None
    assert idp.requests == 3


@pytest.mark.parametrize("failure", [connection_refused, server_error])
async def test_first_fetch_failing_is_unavailable(
    key_set: JwksKeySet, idp: KeyServer, failure: Callable[[], httpx.Response]
) -> None:
    idp.down = failure
    with pytest.raises(JwksUnavailable):
        await key_set.key("rsa-1")


async def test_symmetric_keys_in_the_jwks_are_ignored(key_set: JwksKeySet, idp: KeyServer) -> None:
    """A key server publishes public keys; an "oct" key there must never become an HMAC key."""
    secret = base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode()
    idp.document = {
        "keys": [
            {"kty": "oct", "kid": "shared", "k": secret, "alg": "HS256"},
            {"kty": "oct", "kid": "shared-no-alg", "k": secret},
            RSA_JWK,
        ]
    }
    assert await key_set.key("shared") is None
    assert await key_set.key("shared-no-alg") is None
    assert await key_set.key("rsa-1") is not None


async def test_encryption_keys_in_the_jwks_are_ignored(key_set: JwksKeySet, idp: KeyServer) -> None:
    idp.document = {"keys": [{**RSA_JWK, "kid": "enc-1", "use": "enc"}, EC_JWK]}
    assert await key_set.key("enc-1") is None
    assert await key_set.key("ec-1") is not None
