"""`wfe --help` and the client commands load only what they use: no server, no database."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.test_cli import free_port

SERVER_SIDE = ("service", "engine", "workers", "persistence", "tiers", "tenancy")
LIBRARIES = ("sqlalchemy", "alembic", "celery", "kombu", "pydantic_settings", "jsonschema")


def loaded_by(*arguments: str) -> tuple[int, set[str]]:
    """Run `wfe ARGUMENTS` in a fresh interpreter; its exit code and the top-level modules."""
    script = (
        "import json, sys\n"
        "from cli.main import app\n"
        f"sys.argv = ['wfe', *{list(arguments)!r}]\n"
        "try:\n    app()\nexcept SystemExit as exit:\n    code = exit.code or 0\n"
        "print(json.dumps([code, sorted({name.split('.')[0] for name in sys.modules})]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    code, modules = json.loads(result.stdout.splitlines()[-1])
    return code, set(modules)


def test_help_imports_neither_the_server_nor_its_libraries() -> None:
    code, modules = loaded_by("--help")
    assert code == 0
    assert modules.isdisjoint({*SERVER_SIDE, *LIBRARIES, "grpc"}), modules


def test_a_client_command_imports_grpc_but_nothing_of_the_server() -> None:
    target = ["--tenant", "demo-free", "--token", "t", "--address", f"127.0.0.1:{free_port()}"]
    code, modules = loaded_by("workflow", "get", "some-id", *target)
    assert code == 3  # nothing listens there
    assert "grpc" in modules
    assert modules.isdisjoint({*SERVER_SIDE, *LIBRARIES}), modules
