"""The built-in `http_request` tool: one HTTP call that cannot be aimed at private networks.

The URL is the workflow author's, so every hop (the first request and each redirect) is
checked before it is sent: scheme and port against the settings, the host against
`addresses`, then the name is resolved here and every address it resolves to is judged.
The request goes to a checked address (the URL's host is replaced by the IP, `Host` and
TLS SNI keep the name, so certificates are still verified against it); httpx never
resolves the name again, so a DNS answer that changes between check and connect
(rebinding) cannot redirect the call. Each hop has its own client: no connection,
cookie or TLS session is shared between hosts. Environment proxies are ignored.

Failures, by code (a step's `non_retryable_codes` can name them):
- `invalid_arguments`: the arguments describe no valid request. Not retryable.
- `url_not_allowed`: a scheme, port or address the guard refuses. Not retryable.
- `too_many_redirects`, `invalid_redirect`: not retryable.
- `response_too_large`: the body exceeds `http_max_response_bytes`. Not retryable.
- `external_service_error`: DNS or connection failure, timeout, or an HTTP 5xx, 408 or
  429 answer. Retryable: the remote side may recover.
- `http_client_error`: any other 4xx answer. Not retryable, since the same request would be
  refused again. One code rather than one per status keeps `non_retryable_codes` short;
  the status line is in `details`.
"""

from __future__ import annotations

import asyncio
import codecs
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import httpx

from engine.tools.addresses import (
    IPAddress,
    address_refusal,
    host_refusal,
    literal_address,
    parse_networks,
)
from engine.tools.http_messages import (
    DEFAULT_PORTS,
    REDIRECTS,
    Hop,
    Reply,
    first_hop,
    output,
    redirected,
    timeout_seconds,
)
from engine.tools.registry import StepFailure, ToolCall, ToolMode, ToolSpec, closed_object
from foundation import tracing

if TYPE_CHECKING:
    from foundation.settings import Settings

Resolver: TypeAlias = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the OS resolver gives for `host`, as a client connecting would see them."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class HttpRequestTool:
    """Calls an HTTP endpoint; see the module docstring for the guard and the failure codes."""

    spec: ClassVar[ToolSpec] = ToolSpec(
        name="http_request",
        description="Calls an HTTP endpoint and returns its status code, headers and body.",
        arguments_schema=closed_object(
            {
                "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
                "url": {"type": "string", "minLength": 1},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "query": {"type": "object"},
                "body": {},
                "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
            },
            required=("url",),
        ),
        output_schema=closed_object(
            {
                "status_code": {"type": "integer", "description": "the final HTTP status"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"description": "JSON when the answer is JSON, else text"},
                "url": {"type": "string", "description": "the URL that answered, after redirects"},
            },
            required=("status_code", "headers", "body", "url"),
        ),
        mode=ToolMode.DISPATCHED,
    )

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._schemes = settings.http_allowed_schemes
        self._ports = settings.http_allowed_ports
        self._allowed = parse_networks(settings.http_allowed_networks)
        self._max_bytes = settings.http_max_response_bytes
        self._max_redirects = settings.http_max_redirects
        self._default_timeout = settings.http_default_timeout_seconds
        self._resolver = resolver
        self._ssl = ssl_context or httpx.create_ssl_context()

    async def run(self, call: ToolCall) -> dict[str, Any]:
        hop = first_hop(call.arguments, call.idempotency_key)
        budget = min(timeout_seconds(call.arguments, self._default_timeout), call.timeout_seconds)
        deadline = asyncio.get_running_loop().time() + budget
        redirects = 0
        while True:
            reply = await self._exchange(hop, deadline, budget)
            location = reply.headers.get("location")
            if reply.status_code not in REDIRECTS or location is None:
                return output(hop.url, reply)
            if redirects >= self._max_redirects:
                raise StepFailure(
                    "too_many_redirects",
                    f"{hop.url.host} redirected more than {self._max_redirects} times",
                    retryable=False,
                )
            redirects += 1
            hop = redirected(hop, reply.status_code, location)

    async def _exchange(self, hop: Hop, deadline: float, budget: float) -> Reply:
        """Check, resolve and send one hop, as a client span of the step's (traces on);
        transport errors become `StepFailure` here."""
        attributes = {
            "http.request.method": hop.method,
            "server.address": hop.url.host,
            "url.scheme": hop.url.scheme,
        }
        with tracing.span(f"HTTP {hop.method}", kind="client", attributes=attributes) as span:
            try:
                async with asyncio.timeout_at(deadline):
                    addresses = await self._checked_addresses(hop.url)
                    reply = await self._send(hop, addresses, deadline)
            except StepFailure as refused:
                tracing.fail(span, refused.code, refused.message)
                raise
            except (TimeoutError, httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
                failure = _failure(exc, hop.url.host, budget)
                tracing.fail(span, failure.code, failure.message)
                raise failure from exc
            if span is not None:
                span.set_attribute("http.response.status_code", reply.status_code)
            return reply

    async def _checked_addresses(self, url: httpx.URL) -> list[IPAddress]:
        """Where `url` may be sent: every address its host resolves to, each one judged."""
        host = url.raw_host.decode("ascii")
        if url.scheme not in self._schemes:
            raise _not_allowed(host or str(url), f"scheme {url.scheme!r} is not allowed")
        port = url.port or DEFAULT_PORTS.get(url.scheme)
        if port is None or port not in self._ports:
            raise _not_allowed(host, f"port {port} is not allowed")
        refusal = host_refusal(host, self._allowed)
        if refusal is not None:
            raise _not_allowed(host, f"{host} is not allowed ({refusal})")
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        try:
            found = await self._resolver(host, port)
        except OSError as exc:
            raise StepFailure(
                "external_service_error",
                f"Error connecting to {url.host}",
                details=f"Could not resolve {host}: {exc.strerror or exc}",
            ) from exc
        addresses: list[IPAddress] = []
        for text in dict.fromkeys(found):
            address = literal_address(text)
            if address is None:
                raise _not_allowed(host, f"{host} resolves to an unreadable address")
            why = address_refusal(address, self._allowed)
            if why is not None:
                raise _not_allowed(host, f"{host} resolves to an address that is {why}")
            addresses.append(address)
        if not addresses:
            raise StepFailure(
                "external_service_error",
                f"Error connecting to {url.host}",
                details=f"Could not resolve {host}: no addresses",
            )
        return addresses

    async def _send(self, hop: Hop, addresses: list[IPAddress], deadline: float) -> Reply:
        """Send `hop` to the first checked address that accepts a connection."""
        headers = hop.headers.copy()
        headers["Host"] = hop.url.netloc.decode("ascii")
        extensions = {"sni_hostname": hop.url.raw_host.decode("ascii")}
        loop = asyncio.get_running_loop()
        for index, address in enumerate(addresses):
            pinned = hop.url.copy_with(host=str(_connectable(address)))
            async with httpx.AsyncClient(
                verify=self._ssl, trust_env=False, follow_redirects=False
            ) as client:
                request = client.build_request(
                    hop.method,
                    pinned,
                    headers=headers,
                    content=hop.content,
                    timeout=max(deadline - loop.time(), 0.001),
                    extensions=extensions if hop.url.scheme == "https" else None,
                )
                try:
                    response = await client.send(request, stream=True)
                except httpx.ConnectError:
                    if index == len(addresses) - 1:
                        raise
                    continue
                try:
                    return await self._reply(response, hop.url.host)
                finally:
                    await response.aclose()
        raise AssertionError("a name with no addresses is refused before sending")

    async def _reply(self, response: httpx.Response, host: str) -> Reply:
        """The answer, its body read up to the size cap (a redirect's body is not read)."""
        redirect = response.status_code in REDIRECTS and "location" in response.headers
        body = b"" if redirect else await _read_capped(response, host, self._max_bytes)
        encoding = response.charset_encoding or "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = "utf-8"
        headers = dict(response.headers.items())
        return Reply(response.status_code, response.reason_phrase, headers, body, encoding)


def _connectable(address: IPAddress) -> IPAddress:
    """An IPv4-mapped address was judged as its IPv4 address, so connect to that."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def _read_capped(response: httpx.Response, host: str, limit: int) -> bytes:
    """The decoded body, refused as soon as it grows past `limit` bytes."""
    declared = response.headers.get("content-length", "")
    too_large = StepFailure(
        "response_too_large",
        f"The response from {host} is too large",
        details=f"more than {limit} bytes",
        retryable=False,
    )
    if response.request.method != "HEAD" and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _not_allowed(host: str, why: str) -> StepFailure:
    return StepFailure(
        "url_not_allowed", f"Calling {host} is not allowed", details=why, retryable=False
    )


def _failure(exc: BaseException, host: str, budget: float) -> StepFailure:
    """The one place transport and timeout errors become step failures."""
    message = f"Error connecting to {host}"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        details = f"Timeout after {round(budget * 1000)}ms"
        return StepFailure("external_service_error", message, details=details)
    if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol | httpx.InvalidURL):
        return StepFailure(
            "invalid_arguments",
            f"Could not send a request to {host}",
            details=str(exc),
            retryable=False,
        )
    # The library's own words, never its class name: the tenant sees this text.
    return StepFailure("external_service_error", message, details=str(exc) or "the exchange failed")
