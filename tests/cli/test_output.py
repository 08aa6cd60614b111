"""What the CLI prints and how it reads choices, without a server."""

from __future__ import annotations

import shlex

import pytest
import typer
from google.protobuf import timestamp_pb2

from cli import output
from cli.ports import split
from cli.shell import client_address, export_line
from wfe.v1 import execution_pb2, tenant_pb2


def test_table_aligns_columns_under_upper_case_headers(capsys: pytest.CaptureFixture[str]) -> None:
    output.table(["id", "status"], [("a", "completed"), ("long-id", "failed")], empty="none")
    assert capsys.readouterr().out.splitlines() == [
        "ID       STATUS",
        "a        completed",
        "long-id  failed",
    ]


def test_an_empty_table_says_so_on_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    output.table(["id"], [], empty="no workflows")
    assert capsys.readouterr()[:2] == ("", "no workflows\n")


def test_enum_values_read_and_print_without_their_prefix() -> None:
    status = execution_pb2.ExecutionStatus
    assert output.label(status, execution_pb2.EXECUTION_STATUS_IN_PROGRESS) == "in_progress"
    assert output.label(tenant_pb2.Tier, tenant_pb2.TIER_ENTERPRISE) == "enterprise"
    assert output.choice(status, "In_Progress", "--status") == status.Value(
        "EXECUTION_STATUS_IN_PROGRESS"
    )
    with pytest.raises(typer.BadParameter, match="'unspecified' is not one of queued, pending"):
        output.choice(status, "unspecified", "--status")


def test_timestamps_print_in_utc_and_unset_as_a_dash() -> None:
    assert output.when(timestamp_pb2.Timestamp()) == "-"
    assert output.when(timestamp_pb2.Timestamp(seconds=86400 + 61)) == "1970-01-02 00:01:01Z"


def test_export_line_quotes_what_a_shell_would_split() -> None:
    line = export_line("127.0.0.1:50051", "demo-pro", "a.b c")
    assert shlex.split(line) == [
        "export",
        "WFE_ADDRESS=127.0.0.1:50051",
        "WFE_TENANT=demo-pro",
        "WFE_TOKEN=a.b c",
    ]


def test_clients_reach_a_wildcard_bind_on_loopback_and_the_bound_port() -> None:
    assert client_address("0.0.0.0:50051") == "127.0.0.1:50051"
    assert client_address("[::]:0", 41000) == "[::1]:41000"
    assert client_address("10.1.2.3:50051") == "10.1.2.3:50051"


def test_listen_addresses_split_into_host_and_port() -> None:
    assert split("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert split("[::1]:7") == ("::1", 7)
    assert split("localhost:http") is None
