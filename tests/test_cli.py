"""The `wfe` command as a user runs it: dev mode, tokens, tenant administration.

The client commands, against one shared `wfe dev`, are in tests/cli/.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

WFE = [sys.executable, "-m", "cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_wfe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WFE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def wfe_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env["WFE_DATA_DIR"] = str(tmp_path / "data")
    env["WFE_GATEWAY_LISTEN_ADDRESS"] = "127.0.0.1:0"  # dev's gateway: any free port
    # Nothing listens here: dev mode must not need a broker.
    env["WFE_BROKER_URL"] = "redis://127.0.0.1:9/0"
    return env


def wait_for_health(
    address: str, process: subprocess.Popen[Any], output: Callable[[], str], patience: float = 30
) -> None:
    """Until the server at `address` answers health; its output if it exits or never does."""
    deadline = time.monotonic() + patience
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                return
            except grpc.RpcError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(output()) from exc
                time.sleep(0.1)


@pytest.fixture
def dev_server(wfe_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str, float]]:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    process = subprocess.Popen(
        [*WFE, "dev", "--address", address],
        env=wfe_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_health(address, process, lambda: process.stdout.read() if process.stdout else "")
        yield process, address, time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout:
            process.stdout.close()


def call_by_reflection(
    address: str, method: str, metadata: tuple[tuple[str, str], ...]
) -> dict[str, object]:
    """Call `service/Method` knowing only what the server's reflection says, like grpcurl."""
    service_name, method_name = method.split("/")
    with grpc.insecure_channel(address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        descriptor = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(descriptor.input_type)
        response_class = message_factory.GetMessageClass(descriptor.output_type)
        rpc = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return json_format.MessageToDict(rpc(request_class(), metadata=metadata, timeout=10))


def test_dev_mode_answers_health_within_ten_seconds_and_serves_a_minted_token(
    dev_server: tuple[subprocess.Popen[str], str, float], wfe_env: dict[str, str]
) -> None:
    process, address, ready_after = dev_server
    assert ready_after < 10
    minted = run_wfe(wfe_env, "token", "--tenant", "demo-pro", "--role", "admin", "--ttl", "10m")
    assert minted.returncode == 0, minted.stderr
    tenant = call_by_reflection(
        address,
        "wfe.v1.TenantService/GetTenant",
        (("authorization", f"Bearer {minted.stdout.strip()}"), ("x-tenant-id", "demo-pro")),
    )["tenant"]
    assert isinstance(tenant, dict)
    assert (tenant["id"], tenant["tier"]) == ("demo-pro", "TIER_PROFESSIONAL")
    assert tenant["limits"]["maxWorkflows"] == "50"

    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    output = process.stdout.read() if process.stdout else ""
    assert f"export WFE_ADDRESS={address} WFE_TENANT=demo-free WFE_TOKEN=" in output
    assert "grpcurl" in output


def test_tenant_commands_create_list_and_change_tier(wfe_env: dict[str, str]) -> None:
    assert run_wfe(wfe_env, "migrate").returncode == 0
    created = run_wfe(wfe_env, "tenant", "create", "acme", "--name", "Acme", "--tier", "free")
    assert created.returncode == 0, created.stderr
    duplicate = run_wfe(wfe_env, "tenant", "create", "acme")
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.stderr

    refused = run_wfe(
        wfe_env, "tenant", "set-tier", "acme", "professional", "--override", "max_workflows=9"
    )
    assert refused.returncode != 0
    assert "enterprise" in refused.stderr

    changed = run_wfe(
        wfe_env,
        "tenant",
        "set-tier",
        "acme",
        "enterprise",
        "--override",
        "max_concurrent_executions=300",
    )
    assert changed.returncode == 0, changed.stderr
    listed = [json.loads(line) for line in run_wfe(wfe_env, "tenant", "list").stdout.splitlines()]
    assert listed[0]["id"] == "acme"
    assert listed[0]["tier"] == "enterprise"
    assert listed[0]["overrides"] == {"max_concurrent_executions": 300}


def test_token_refuses_bad_ttl_and_production_key_mode(wfe_env: dict[str, str]) -> None:
    assert run_wfe(wfe_env, "token", "--tenant", "a", "--ttl", "soon").returncode != 0
    jwks = {**wfe_env, "WFE_JWT_JWKS_URL": "https://idp.example/jwks.json"}
    assert run_wfe(jwks, "token", "--tenant", "a").returncode != 0


def test_serve_refuses_to_start_without_a_key_source(wfe_env: dict[str, str]) -> None:
    result = run_wfe(wfe_env, "serve")
    assert result.returncode != 0
    assert "WFE_JWT_SECRET" in result.stderr
