"""What a client command says and exits with when the call fails: refused, misused, unreachable."""

from __future__ import annotations

import pytest

from cli import client
from foundation.settings import Settings
from tests.cli.conftest import LiveDev
from tests.test_cli import free_port, run_wfe

REFUSALS = (
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "RESOURCE_EXHAUSTED",
    "ABORTED",
    "OUT_OF_RANGE",
    "CANCELLED",
)
FAILURES = ("UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "DATA_LOSS")


@pytest.mark.parametrize("code", REFUSALS)
def test_a_refusal_by_the_server_exits_1(code: str) -> None:
    assert client.exit_code(code) == client.REFUSED == 1


@pytest.mark.parametrize("code", FAILURES)
def test_a_server_failure_exits_3(code: str) -> None:
    assert client.exit_code(code) == client.FAILED == 3


def test_the_client_default_address_is_where_the_server_listens_by_default() -> None:
    assert client.DEFAULT_ADDRESS == Settings.model_fields["listen_address"].default


def test_an_unreachable_server_exits_3_naming_the_address(live_dev: LiveDev) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    result = run_wfe({**live_dev.as_tenant("demo-pro"), "WFE_ADDRESS": nowhere}, "tenant", "info")
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"UNAVAILABLE: no wfe server answers at {nowhere} (")
    assert "--address / WFE_ADDRESS" in result.stderr


def test_a_missing_token_is_a_usage_error(live_dev: LiveDev) -> None:
    env = {k: v for k, v in live_dev.as_tenant("demo-pro").items() if k != "WFE_TOKEN"}
    result = run_wfe(env, "workflow", "list")
    assert result.returncode == 2
    assert "Missing option '--token'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_token_for_another_tenant_is_refused_with_the_reason(live_dev: LiveDev) -> None:
    env = {**live_dev.as_tenant("demo-free"), "WFE_TENANT": "demo-pro"}
    result = run_wfe(env, "tenant", "info")
    assert result.returncode == 1
    first, *rest = result.stderr.splitlines()
    assert first.startswith("PERMISSION_DENIED: ")  # the reason, when it is the code too
    assert rest[-1].startswith("  request id: ")


def test_help_documents_the_exit_codes(live_dev: LiveDev) -> None:
    for group in ([], ["workflow"], ["execution"], ["template"], ["tenant"]):
        shown = run_wfe(live_dev.env, *group, "--help")
        assert shown.returncode == 0
        assert "Exit codes: 0 done; 1 refused by the server" in " ".join(shown.stdout.split())
