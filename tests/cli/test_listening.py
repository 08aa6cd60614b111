"""Where `wfe dev` and `wfe serve` listen, and the one line they stop with when it is taken."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import free_port, run_wfe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken() -> Iterator[str]:
    """An address something already listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield f"127.0.0.1:{holder.getsockname()[1]}"


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(WFE_DATA_DIR=str(tmp_path / "data"), WFE_BROKER_URL="redis://127.0.0.1:9/0")
    env.update(WFE_GATEWAY_LISTEN_ADDRESS="127.0.0.1:0")
    env.update(variables)
    return env


def refusal_line(result: subprocess.CompletedProcess[str], address: str) -> str:
    """The one stderr line of a start-up refused for a taken `address`."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no migration ran, no token was printed
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    port = address.rsplit(":", 1)[1]
    line = result.stderr.strip()
    assert line.startswith(f"port {port} on 127.0.0.1 is already in use;"), line
    assert "--address 127.0.0.1:" in line and "WFE_LISTEN_ADDRESS=127.0.0.1:" in line, line
    return line


def test_dev_on_a_taken_port_stops_before_any_work_with_one_line(
    taken: str, tmp_path: Path
) -> None:
    refusal_line(run_wfe(environment(tmp_path), "dev", "--address", taken), taken)
    assert not (tmp_path / "data").exists(), "touched the data dir before refusing"


def test_dev_and_serve_listen_where_wfe_listen_address_says(taken: str, tmp_path: Path) -> None:
    env = environment(tmp_path, WFE_LISTEN_ADDRESS=taken)
    refusal_line(run_wfe(env, "dev"), taken)
    secret = environment(tmp_path, WFE_LISTEN_ADDRESS=taken, WFE_JWT_SECRET="s" * 40)
    refusal_line(run_wfe(secret, "serve"), taken)


def test_the_address_flag_wins_over_wfe_listen_address(taken: str, tmp_path: Path) -> None:
    env = environment(tmp_path, WFE_LISTEN_ADDRESS=f"127.0.0.1:{free_port()}")
    refusal_line(run_wfe(env, "dev", "--address", taken), taken)


def test_make_dev_passes_an_optional_address() -> None:
    def recipe(*arguments: str) -> str:
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", "dev", *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return dry.stdout.strip().splitlines()[-1]

    assert recipe().endswith("/wfe dev")
    assert recipe("ADDRESS=127.0.0.1:50052").endswith("/wfe dev --address 127.0.0.1:50052")


def test_dev_on_a_taken_gateway_port_stops_before_any_work_with_one_line(
    taken: str, tmp_path: Path
) -> None:
    env = environment(tmp_path, WFE_GATEWAY_LISTEN_ADDRESS=taken)
    result = run_wfe(env, "dev", "--address", f"127.0.0.1:{free_port()}")
    assert (result.returncode, result.stdout, result.stderr.count("\n")) == (2, "", 1)
    line = result.stderr.strip()
    port = taken.rsplit(":", 1)[1]
    assert line.startswith(f"port {port} on 127.0.0.1 is already in use;"), line
    assert "--gateway-address 127.0.0.1:" in line and "WFE_GATEWAY_LISTEN_ADDRESS=" in line, line
    assert not (tmp_path / "data").exists(), "touched the data dir before refusing"
    flag = run_wfe(environment(tmp_path), "dev", "--gateway-address", taken)
    assert flag.returncode == 2 and "--gateway-address" in flag.stderr, flag.stderr
