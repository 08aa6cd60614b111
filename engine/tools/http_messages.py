"""What an `http_request` call sends and returns, with no I/O.

Requests are built from the step's arguments, redirects derive the next request the way
browsers do, and an answer becomes the step's output or the failure its status means.
`http.py` does the guarded sending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from engine.tools import StepFailure

METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES: Final = frozenset({408, 429})
BODY_HEADERS: Final = ("content-type", "content-length", "content-encoding", "transfer-encoding")
FRAMING_HEADERS: Final = ("host", "content-length", "transfer-encoding")
CREDENTIAL_HEADERS: Final = ("authorization", "proxy-authorization", "cookie")
EXCERPT_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class Hop:
    """One request of a call; a redirect derives the next one from it."""

    method: str
    url: httpx.URL
    headers: httpx.Headers
    content: bytes | None


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer, its body already read within the size cap."""

    status_code: int
    reason: str
    headers: dict[str, str]
    body: bytes
    encoding: str


def first_hop(arguments: Mapping[str, Any], idempotency_key: str) -> Hop:
    """The request the arguments describe; arguments that describe none are refused."""
    try:
        method = str(arguments.get("method", "GET")).upper()
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not supported")
        raw_url = arguments.get("url")
        if not isinstance(raw_url, str):
            raise ValueError("url must be a string")
        query = {key: query_value(value) for key, value in (arguments.get("query") or {}).items()}
        url = httpx.URL(raw_url).copy_merge_params(query)
        headers = httpx.Headers(arguments.get("headers") or {})
        if any(char in text for item in headers.raw for text in item for char in b"\r\n\0"):
            raise ValueError("header names and values cannot contain line breaks")
        content = encode_body(arguments.get("body"), headers)
    except (ValueError, TypeError, AttributeError, UnicodeError, httpx.InvalidURL) as exc:
        raise StepFailure(
            "invalid_arguments",
            "The http_request arguments are not valid",
            details=str(exc),
            retryable=False,
        ) from exc
    for name in FRAMING_HEADERS:  # set from the URL and the body, never by the caller
        headers.pop(name, None)
    headers.setdefault("Idempotency-Key", idempotency_key)
    return Hop(method, url, headers, content)


def timeout_seconds(arguments: Mapping[str, Any], default: float) -> float:
    value = arguments.get("timeout_seconds")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
        raise StepFailure(
            "invalid_arguments",
            "The http_request arguments are not valid",
            details="timeout_seconds must be a number above 0 and at most 300",
            retryable=False,
        )
    return float(value)


def query_value(value: Any) -> Any:
    """Scalars (and lists of them) as httpx sends them; anything nested as JSON text."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_body(body: Any, headers: httpx.Headers) -> bytes | None:
    """A string is sent as is; any other JSON value as JSON. Bytes are kept for 307/308."""
    if body is None:
        return None
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def redirected(hop: Hop, status: int, location: str) -> Hop:
    """The next hop, as browsers make it: 303 (and 301/302 after POST) become a GET."""
    try:
        url = hop.url.join(location)
    except httpx.InvalidURL as exc:
        raise StepFailure(
            "invalid_redirect",
            f"{hop.url.host} redirected to an invalid URL",
            details=location[:EXCERPT_CHARS],
            retryable=False,
        ) from exc
    method, content, headers = hop.method, hop.content, hop.headers.copy()
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, content = "GET", None
        for name in BODY_HEADERS:
            headers.pop(name, None)
    if origin(url) != origin(hop.url):
        for name in CREDENTIAL_HEADERS:
            headers.pop(name, None)
    return Hop(method, url, headers, content)


def origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port or DEFAULT_PORTS.get(url.scheme)


def output(url: httpx.URL, reply: Reply) -> dict[str, Any]:
    """The step's output, or the failure an error status means."""
    text = reply.body.decode(reply.encoding, errors="replace")
    if reply.status_code >= 400:
        details = f"HTTP {reply.status_code} {reply.reason}".rstrip()
        if text.strip():
            details += f": {text.strip()[:EXCERPT_CHARS]}"
        if reply.status_code >= 500 or reply.status_code in RETRYABLE_STATUSES:
            raise StepFailure(
                "external_service_error", f"Error calling {url.host}", details=details
            )
        raise StepFailure(
            "http_client_error",
            f"{url.host} refused the request",
            details=details,
            retryable=False,
        )
    return {
        "status_code": reply.status_code,
        "headers": reply.headers,
        "body": parsed(text, reply.headers.get("content-type", "")),
        "url": str(url.copy_with(userinfo=b"")),
    }


def parsed(text: str, content_type: str) -> Any:
    """JSON bodies as values (when they parse as strict JSON), anything else as text."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return text
    return text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
