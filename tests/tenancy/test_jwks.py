"""Production mode: RS256/ES256 tokens checked against keys served from a real JWKS URL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc import aio
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from engine.dispatch import Publisher
from service.server import start_server
from tenancy.database import TenantDatabase
from tenancy.tokens import JwksVerifier
from tenancy.verifiers import verifier_for
from tests.conftest import AUDIENCE, ISSUER, NewTenant, error_info, server_settings
from wfe.v1 import tenant_pb2, tenant_pb2_grpc

UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """A private key an identity provider signs with, and the public JWK it publishes."""

    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    jwk: dict[str, Any]

    def sign(self, tenant_id: str, *, kid: str | None = None) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + 600,
            "tenants": [tenant_id],
        }
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": kid or self.kid}
        )

    def public_pem(self, fmt: serialization.PublicFormat) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM, fmt)


def rsa_key(kid: str) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "RS256", private, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"})


def ec_key(kid: str) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "ES256", private, {**jwk, "kid": kid, "use": "sig", "alg": "ES256"})


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"rsa": rsa_key("rsa-1"), "rsa2": rsa_key("rsa-2"), "ec": ec_key("ec-1")}


class JwksServer:
    """A real HTTP server publishing a key set this test controls; counts GET requests."""

    def __init__(self) -> None:
        self.requests = 0
        self.status = 200
        self.body = b'{"keys": []}'
        self.lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._http.server_port}/.well-known/jwks.json"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def publish(self, *entries: SigningKey | dict[str, Any]) -> None:
        jwks = [e.jwk if isinstance(e, SigningKey) else e for e in entries]
        self.body = json.dumps({"keys": jwks}).encode()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


def _handler(jwks: JwksServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with jwks.lock:
                jwks.requests += 1
                status, body = jwks.status, jwks.body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.start()
    yield server
    server.stop()


Connect = Callable[..., Awaitable[aio.Channel]]


@pytest.fixture
async def connect(database: TenantDatabase, engine: Publisher) -> AsyncIterator[Connect]:
    """Starts a server in JWKS mode for `url` (plus settings overrides); returns a channel."""
    async with AsyncExitStack() as stack:

        async def start(url: str, **overrides: Any) -> aio.Channel:
            settings = server_settings(jwt_secret=None, jwt_jwks_url=url, **overrides)
            verifier = verifier_for(settings)
            assert isinstance(verifier, JwksVerifier)
            stack.push_async_callback(verifier.aclose)
            running = await start_server(settings, database, verifier, engine)
            stack.push_async_callback(running.stop, 0)
            channel = aio.insecure_channel(f"127.0.0.1:{running.port}")
            return await stack.enter_async_context(channel)

        yield start


async def get_tenant(
    channel: aio.Channel, tenant_id: str, jwt_text: str
) -> tenant_pb2.GetTenantResponse:
    metadata = (("authorization", f"Bearer {jwt_text}"), ("x-tenant-id", tenant_id))
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    return await stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=metadata, timeout=10)


async def refused(channel: aio.Channel, tenant_id: str, jwt_text: str) -> tuple[Any, str]:
    """(code, reason) and message of a call that must fail."""
    with pytest.raises(aio.AioRpcError) as caught:
        await get_tenant(channel, tenant_id, jwt_text)
    code, reason, _ = error_info(caught.value)
    return (code, reason), caught.value.details() or ""


async def test_rs256_and_es256_tokens_are_accepted(
    jwks: JwksServer, connect: Connect, keys: dict[str, SigningKey], new_tenant: NewTenant
) -> None:
    jwks.publish(keys["rsa"], keys["ec"])
    channel = await connect(jwks.url)
    tenant_id = await new_tenant()
    for key in (keys["rsa"], keys["ec"]):
        assert (await get_tenant(channel, tenant_id, key.sign(tenant_id))).tenant.id == tenant_id
    assert jwks.requests == 1, "the key set is cached between calls"


@pytest.mark.parametrize(
    "fmt",
    [serialization.PublicFormat.SubjectPublicKeyInfo, serialization.PublicFormat.PKCS1],
    ids=["spki", "pkcs1"],
)
async def test_hs256_token_keyed_with_the_rsa_public_key_is_unauthenticated(
    jwks: JwksServer,
    connect: Connect,
    keys: dict[str, SigningKey],
    new_tenant: NewTenant,
    fmt: serialization.PublicFormat,
) -> None:
    """The classic key confusion: HMAC with the public key, which every attacker knows."""
    jwks.publish(keys["rsa"])
    channel = await connect(jwks.url)
    tenant_id = await new_tenant()
    valid = keys["rsa"].sign(tenant_id)
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    signing_input = f"{header}.{valid.split('.')[1]}"
    mac = hmac.new(keys["rsa"].public_pem(fmt), signing_input.encode(), hashlib.sha256)
    status, _ = await refused(channel, tenant_id, f"{signing_input}.{b64url(mac.digest())}")
    assert status == UNAUTHENTICATED


async def test_token_whose_algorithm_does_not_match_its_key_is_unauthenticated(
    jwks: JwksServer, connect: Connect, keys: dict[str, SigningKey], new_tenant: NewTenant
) -> None:
    jwks.publish(keys["rsa"], keys["ec"])
    channel = await connect(jwks.url)
    tenant_id = await new_tenant()
    for signer, named in (("rsa", "ec"), ("ec", "rsa")):
        jwt_text = keys[signer].sign(tenant_id, kid=keys[named].kid)
        status, message = await refused(channel, tenant_id, jwt_text)
        assert status == UNAUTHENTICATED
        assert "does not match" in message


async def test_unknown_kids_are_unauthenticated_and_fetch_at_most_once(
    jwks: JwksServer, connect: Connect, keys: dict[str, SigningKey], new_tenant: NewTenant
) -> None:
    """A flood of random kids is throttled and shares one fetch: the IdP is not flooded."""
    jwks.publish(keys["rsa"])
    channel = await connect(jwks.url, jwks_min_refresh_seconds=60)
    tenant_id = await new_tenant()

    async def flood() -> list[BaseException | tenant_pb2.GetTenantResponse]:
        calls = [
            get_tenant(channel, tenant_id, keys["rsa"].sign(tenant_id, kid=f"unknown-{i}"))
            for i in range(20)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    for outcome in await flood():
        assert isinstance(outcome, aio.AioRpcError)
        assert error_info(outcome)[:2] == UNAUTHENTICATED
    assert jwks.requests == 1
    valid = keys["rsa"].sign(tenant_id)
    assert (await get_tenant(channel, tenant_id, valid)).tenant.id == tenant_id
    await flood()
    assert jwks.requests == 1


async def test_rotated_key_is_accepted_once_min_refresh_has_passed(
    jwks: JwksServer, connect: Connect, keys: dict[str, SigningKey], new_tenant: NewTenant
) -> None:
    jwks.publish(keys["rsa"])
    channel = await connect(jwks.url, jwks_min_refresh_seconds=0.3)
    tenant_id = await new_tenant()
    old, new = keys["rsa"].sign(tenant_id), keys["rsa2"].sign(tenant_id)
    assert (await get_tenant(channel, tenant_id, old)).tenant.id == tenant_id

    jwks.publish(keys["rsa2"])
    await asyncio.sleep(0.4)
    assert (await get_tenant(channel, tenant_id, new)).tenant.id == tenant_id
    assert jwks.requests == 2
    status, _ = await refused(channel, tenant_id, old)
    assert status == UNAUTHENTICATED, "a key withdrawn from the JWKS no longer verifies"


@pytest.mark.parametrize("failure", ["refused", "silent"])
async def test_jwks_down_at_first_use_is_unauthenticated_quickly(
    connect: Connect, keys: dict[str, SigningKey], new_tenant: NewTenant, failure: str
) -> None:
    """Connection refused, or a server that never answers: UNAUTHENTICATED, not a hang."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        if failure == "silent":
            sock.listen(8)
        else:
            sock.close()
        channel = await connect(f"http://127.0.0.1:{port}/jwks", jwks_timeout_seconds=0.5)
        tenant_id = await new_tenant()
        started = time.monotonic()
        status, message = await refused(channel, tenant_id, keys["rsa"].sign(tenant_id))
        assert time.monotonic() - started < 5
    assert status == UNAUTHENTICATED
    assert "unavailable" in message


@pytest.mark.parametrize(
    ("http_status", "body"),
    [
        (500, b'{"keys": []}'),
        (200, b"<html>not json</html>"),
        (200, b"[]"),
        (200, b'{"keys": "abc"}'),
        (200, b'{"keys": null}'),
    ],
    ids=["http-500", "not-json", "json-list", "keys-string", "keys-null"],
)
async def test_unusable_jwks_document_is_unauthenticated(
    jwks: JwksServer,
    connect: Connect,
    keys: dict[str, SigningKey],
    new_tenant: NewTenant,
    http_status: int,
    body: bytes,
) -> None:
    jwks.status, jwks.body = http_status, body
    channel = await connect(jwks.url)
    tenant_id = await new_tenant()
    status, _ = await refused(channel, tenant_id, keys["rsa"].sign(tenant_id))
    assert status == UNAUTHENTICATED


async def test_an_unusable_key_in_the_jwks_does_not_hide_the_good_ones(
    jwks: JwksServer, connect: Connect, keys: dict[str, SigningKey], new_tenant: NewTenant
) -> None:
    odd = {"kty": "EC", "kid": "odd", "use": "sig", "crv": "P-999", "x": "AA", "y": "AA"}
    jwks.publish(odd, keys["rsa"])
    channel = await connect(jwks.url)
    tenant_id = await new_tenant()
    response = await get_tenant(channel, tenant_id, keys["rsa"].sign(tenant_id))
    assert response.tenant.id == tenant_id
