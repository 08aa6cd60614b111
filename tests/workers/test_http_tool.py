"""`http_request` against a real local server: what it sends, returns, follows and refuses."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from engine.tools import StepFailure, ToolCall, ToolMode, installed
from engine.tools.http import HttpRequestTool, Resolver
from foundation.settings import Settings
from tests.workers.local_server import LocalServer, certificate_for, serve

NAMES = {
    "api.example.test": ["127.0.0.1"],
    "other.example.test": ["127.0.0.1"],
    "internal.example.test": ["10.0.0.1"],
}


async def names(host: str, port: int) -> Sequence[str]:
    """A resolver for names under .test (which real DNS never answers)."""
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


async def no_lookups(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} was resolved, but it should be refused before any lookup")


def answering(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return list(addresses)

    return resolve


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with serve() as running:
        yield running


def local_settings(server: LocalServer, **overrides: Any) -> Settings:
    """Settings that allowlist loopback and the local server's port."""
    values: dict[str, Any] = {
        "http_allowed_networks": ("127.0.0.0/8",),
        "http_allowed_ports": frozenset({80, 443, server.port}),
    }
    return Settings(**(values | overrides))


def local_tool(
    server: LocalServer, resolver: Resolver = names, **overrides: Any
) -> HttpRequestTool:
    return HttpRequestTool(local_settings(server, **overrides), resolver=resolver)


def call(arguments: Mapping[str, Any], timeout: float = 10.0) -> ToolCall:
    return ToolCall("tenant-a", "exec-1", "fetch", 2, arguments, timeout)


async def failure(
    tool: HttpRequestTool, arguments: Mapping[str, Any], step_timeout: float = 10.0
) -> StepFailure:
    with pytest.raises(StepFailure) as raised:
        await tool.run(call(arguments, step_timeout))
    return raised.value


def test_the_entry_point_registers_http_request_as_a_dispatched_tool() -> None:
    spec = installed().spec("http_request")

    assert spec is HttpRequestTool.spec
    assert (spec.name, spec.mode) == ("http_request", ToolMode.DISPATCHED)
    assert spec.arguments_schema["required"] == ["url"]
    assert sorted(spec.output_schema["properties"]) == ["body", "headers", "status_code", "url"]
    assert isinstance(installed().build(Settings())["http_request"], HttpRequestTool)


async def test_get_returns_status_headers_and_json_body(server: LocalServer) -> None:
    output = await local_tool(server).run(call({"url": server.url("/json")}))

    assert output["status_code"] == 200
    assert output["headers"]["x-test"] == "yes"
    assert output["headers"]["content-type"] == "application/json"
    assert output["body"] == {"hello": "world"}
    assert output["url"] == server.url("/json")


async def test_post_sends_a_json_body_and_query(server: LocalServer) -> None:
    arguments = {
        "method": "POST",
        "url": server.url("/echo?a=1"),
        "query": {"b": "two", "c": [1, 2]},
        "body": {"order": 7, "items": ["x"]},
    }
    echoed = (await local_tool(server).run(call(arguments)))["body"]

    assert echoed["method"] == "POST"
    assert echoed["path"] == "/echo?a=1&b=two&c=1&c=2"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["body"] == '{"order":7,"items":["x"]}'


async def test_string_body_is_sent_as_text(server: LocalServer) -> None:
    arguments = {"method": "PUT", "url": server.url("/echo"), "body": "plain words"}
    echoed = (await local_tool(server).run(call(arguments)))["body"]

    assert echoed["body"] == "plain words"
    assert echoed["headers"]["content-type"] == "text/plain; charset=utf-8"


async def test_idempotency_key_is_sent(server: LocalServer) -> None:
    echoed = (await local_tool(server).run(call({"url": server.url("/echo")})))["body"]

    assert echoed["headers"]["idempotency-key"] == "exec-1:fetch:2"


async def test_callers_idempotency_key_is_kept(server: LocalServer) -> None:
    arguments = {"url": server.url("/echo"), "headers": {"idempotency-key": "mine"}}
    echoed = (await local_tool(server).run(call(arguments)))["body"]

    assert echoed["headers"]["idempotency-key"] == "mine"


async def test_loopback_is_refused_without_an_allowlist(server: LocalServer) -> None:
    tool = HttpRequestTool(Settings(http_allowed_ports=frozenset({server.port})))
    before = len(server.requests)

    refused = await failure(tool, {"url": server.url("/json")})

    assert (refused.code, refused.retryable) == ("url_not_allowed", False)
    assert "loopback" in refused.details
    assert len(server.requests) == before


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "192.168.1.20",
        "169.254.169.254",
        "100.100.100.200",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b::808:808",
        "2002:7f00:1::",
        "2001:0:4136:e378::1",
        "100.64.0.1",
        "fe80::1",
        "::1",
        "0.0.0.0",
        "224.0.0.251",
        "198.18.0.1",
    ],
)
async def test_forbidden_address_classes_are_refused(address: str) -> None:
    tool = HttpRequestTool(Settings(), resolver=answering(address))

    refused = await failure(tool, {"url": "http://api.example.test/"})

    assert (refused.code, refused.retryable) == ("url_not_allowed", False)
    assert address not in refused.message + refused.details


async def test_every_resolved_address_is_checked() -> None:
    tool = HttpRequestTool(Settings(), resolver=answering("93.184.215.14", "127.0.0.1"))

    refused = await failure(tool, {"url": "https://api.example.test/"})

    assert refused.code == "url_not_allowed"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://10.1.2.3/",
    ],
)
async def test_literal_forbidden_hosts_are_refused_without_lookup(url: str) -> None:
    refused = await failure(HttpRequestTool(Settings(), resolver=no_lookups), {"url": url})

    assert (refused.code, refused.retryable) == ("url_not_allowed", False)


@pytest.mark.parametrize(
    ("host", "code"),
    [
        ("2130706433", "url_not_allowed"),
        ("0x7f.1", "url_not_allowed"),
        ("0x7f000001", "url_not_allowed"),
        ("127.1", "url_not_allowed"),
        ("127.0.0.1.", "url_not_allowed"),
        ("0177.0.0.1", "invalid_arguments"),
        ("127.000.000.001", "invalid_arguments"),
    ],
)
async def test_numeric_host_tricks_are_refused(server: LocalServer, host: str, code: str) -> None:
    tool = local_tool(server, resolver=no_lookups)

    refused = await failure(tool, {"url": server.url("/json", host=host)})

    assert (refused.code, refused.retryable) == (code, False)


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://internal.example.test/",
        "http://127.0.0.1:1/",
        "file:///etc/passwd",
        "http://2130706433/",
    ],
)
async def test_redirect_targets_are_checked_again(server: LocalServer, target: str) -> None:
    refused = await failure(local_tool(server), {"url": redirect(server, target)})

    assert (refused.code, refused.retryable) == ("url_not_allowed", False)


async def test_redirect_to_an_allowed_address_is_followed(server: LocalServer) -> None:
    target = server.url("/json", host="api.example.test")

    output = await local_tool(server).run(call({"url": redirect(server, target)}))

    assert output["body"] == {"hello": "world"}
    assert output["url"] == target


@pytest.mark.parametrize(
    ("status", "method", "expected_method", "expected_body"),
    [
        (303, "POST", "GET", ""),
        (303, "PUT", "GET", ""),
        (302, "POST", "GET", ""),
        (301, "POST", "GET", ""),
        (302, "PUT", "PUT", '{"n":1}'),
        (307, "POST", "POST", '{"n":1}'),
        (308, "PATCH", "PATCH", '{"n":1}'),
    ],
)
async def test_redirects_change_or_keep_the_method_as_browsers_do(
    server: LocalServer, status: int, method: str, expected_method: str, expected_body: str
) -> None:
    arguments = {"method": method, "url": redirect(server, "/echo", status), "body": {"n": 1}}

    echoed = (await local_tool(server).run(call(arguments)))["body"]

    assert (echoed["method"], echoed["body"]) == (expected_method, expected_body)
    assert ("content-type" in echoed["headers"]) == bool(expected_body)


@pytest.mark.parametrize(("host", "kept"), [("127.0.0.1", True), ("other.example.test", False)])
async def test_authorization_is_dropped_when_a_redirect_leaves_the_origin(
    server: LocalServer, host: str, kept: bool
) -> None:
    arguments = {
        "url": redirect(server, server.url("/echo", host=host)),
        "headers": {"Authorization": "Bearer secret", "X-Other": "stays"},
    }

    echoed = (await local_tool(server).run(call(arguments)))["body"]

    assert ("authorization" in echoed["headers"]) is kept
    assert echoed["headers"]["x-other"] == "stays"


async def test_redirects_stop_at_the_limit(server: LocalServer) -> None:
    before = len(server.requests)

    refused = await failure(local_tool(server, http_max_redirects=2), {"url": server.url("/loop")})

    assert (refused.code, refused.retryable) == ("too_many_redirects", False)
    assert len(server.requests) - before == 3


async def test_dns_rebinding_cannot_move_the_connection(server: LocalServer) -> None:
    answers = iter([["127.0.0.1"], ["169.254.169.254"], ["10.0.0.1"]])
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        return next(answers)

    url = server.url("/echo", host="rebind.example.test")
    output = await local_tool(server, resolver=rebinding).run(call({"url": url}))

    assert lookups == ["rebind.example.test"]
    assert output["body"]["headers"]["host"] == f"rebind.example.test:{server.port}"
    assert output["url"] == url


async def test_https_is_pinned_but_verified_against_the_name(tmp_path: Path) -> None:
    server_tls, client_tls = certificate_for("api.example.test", tmp_path)
    with serve(server_tls) as tls_server:
        settings = local_settings(tls_server)
        tool = HttpRequestTool(settings, resolver=names, ssl_context=client_tls)
        url = tls_server.url("/json", host="api.example.test", scheme="https")

        output = await tool.run(call({"url": url}))
        mismatch = await failure(tool, {"url": url.replace("api.", "other.")})

    assert output["body"] == {"hello": "world"}
    assert tls_server.server_names[0] == "api.example.test"
    assert (mismatch.code, mismatch.retryable) == ("external_service_error", True)
    assert "certificate" in mismatch.details.lower()


@pytest.mark.parametrize("declared", ["1", "0"])
async def test_responses_over_the_cap_are_refused(server: LocalServer, declared: str) -> None:
    tool = local_tool(server, http_max_response_bytes=3000)
    url = server.url(f"/big?size=4096&declared={declared}")

    refused = await failure(tool, {"url": url})

    assert (refused.code, refused.retryable) == ("response_too_large", False)


async def test_responses_within_the_cap_are_returned(server: LocalServer) -> None:
    tool = local_tool(server, http_max_response_bytes=4096)

    output = await tool.run(call({"url": server.url("/big?size=4096")}))

    assert output["body"] == "x" * 4096


async def test_head_answers_are_not_held_to_their_declared_length(server: LocalServer) -> None:
    tool = local_tool(server, http_max_response_bytes=100)
    arguments = {"method": "HEAD", "url": server.url("/big?size=4096&declared=1")}

    output = await tool.run(call(arguments))

    assert (output["status_code"], output["body"]) == (200, "")
    assert output["headers"]["content-length"] == "4096"


async def test_callers_cannot_set_framing_headers(server: LocalServer) -> None:
    arguments = {
        "method": "POST",
        "url": server.url("/echo"),
        "headers": {"Host": "evil.example.test", "Content-Length": "1"},
        "body": "four",
    }
    echoed = (await local_tool(server).run(call(arguments)))["body"]

    assert echoed["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert (echoed["headers"]["content-length"], echoed["body"]) == ("4", "four")


@pytest.mark.parametrize(("argument", "step_timeout"), [(0.2, 10.0), (30, 0.2)])
async def test_slow_answers_time_out(
    server: LocalServer, argument: float, step_timeout: float
) -> None:
    arguments = {"url": server.url("/sleep"), "timeout_seconds": argument}

    timed_out = await failure(local_tool(server), arguments, step_timeout)

    assert (timed_out.code, timed_out.retryable) == ("external_service_error", True)
    assert timed_out.message == "Error connecting to 127.0.0.1"
    assert timed_out.details == "Timeout after 200ms"


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_server_errors_are_retryable(server: LocalServer, status: int) -> None:
    refused = await failure(local_tool(server), {"url": server.url(f"/status/{status}")})

    assert (refused.code, refused.retryable) == ("external_service_error", True)
    assert refused.details.startswith(f"HTTP {status} ")


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retryable(server: LocalServer, status: int) -> None:
    refused = await failure(local_tool(server), {"url": server.url(f"/status/{status}")})

    assert (refused.code, refused.retryable) == ("http_client_error", False)
    assert refused.details.startswith(f"HTTP {status} ")
    assert "as asked" in refused.details


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:22/", "ftp://127.0.0.1/", "file:///etc/passwd", "example.test/x"]
)
async def test_disallowed_ports_and_schemes_are_refused(server: LocalServer, url: str) -> None:
    refused = await failure(local_tool(server, resolver=no_lookups), {"url": url})

    assert (refused.code, refused.retryable) == ("url_not_allowed", False)


async def test_a_refused_connection_is_retryable(server: LocalServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    tool = local_tool(server, http_allowed_ports=frozenset({closed_port}))

    refused = await failure(tool, {"url": f"http://127.0.0.1:{closed_port}/"})

    assert (refused.code, refused.retryable) == ("external_service_error", True)


async def test_an_unknown_name_is_retryable(server: LocalServer) -> None:
    refused = await failure(local_tool(server), {"url": server.url("/", host="nowhere.test")})

    assert (refused.code, refused.retryable) == ("external_service_error", True)
    assert "Could not resolve nowhere.test" in refused.details


@pytest.mark.parametrize(
    "arguments",
    [
        {"url": "http://api.example.test/", "method": "TRACE"},
        {"url": 7},
        {"url": "http://api.example.test/", "headers": {"X-Bad": "a\r\nInjected: 1"}},
        {"url": "http://api.example.test/", "body": {"n": float("nan")}},
        {"url": "http://api.example.test/", "timeout_seconds": 0},
    ],
)
async def test_invalid_arguments_are_not_retryable(arguments: dict[str, Any]) -> None:
    refused = await failure(HttpRequestTool(Settings(), resolver=no_lookups), arguments)

    assert (refused.code, refused.retryable) == ("invalid_arguments", False)


def redirect(server: LocalServer, target: str, status: int = 302) -> str:
    return server.url(f"/redirect?status={status}&to={quote(target, safe='')}")
