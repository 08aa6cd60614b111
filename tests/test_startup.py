"""Start-up refusals: a role row-level security would not bind, and misspelt settings.

Each case runs the real `wfe` command as a user would and reads its exit code and stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from persistence.preflight import Defect, role_defects
from tests.databases import ThrowawayDatabase, postgres_admin_url
from tests.test_cli import free_port, run_wfe

REMEDY = "connect as the service role (see deploy/postgres/roles.sql)"
COMMANDS = ("serve", "worker", "beat")


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without its `WFE_*`, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WFE_")}
    env.update(
        WFE_DATA_DIR=str(tmp_path / "data"),
        WFE_JWT_SECRET="startup-secret-" + "x" * 32,
        WFE_LISTEN_ADDRESS="127.0.0.1:0",
        WFE_GATEWAY_LISTEN_ADDRESS="127.0.0.1:0",
        # Nothing listens here: a command that failed to refuse would hang, then time out.
        WFE_BROKER_URL="redis://127.0.0.1:9/0",
    )
    env.update(variables)
    return env


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The refusal's text, with the error box of a usage error unwrapped into one line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split())


@pytest.fixture(scope="module")
def unsafe_roles(postgres: ThrowawayDatabase) -> Iterator[dict[Defect, str]]:
    """A database URL per defect: throwaway superuser and BYPASSRLS roles, and the owner."""
    base = make_url(postgres_admin_url())
    database = make_url(postgres.service_url).database
    prefix = f"wfe_t_{uuid.uuid4().hex[:10]}"
    made = {
        Defect.SUPERUSER: (f"{prefix}_super", "LOGIN SUPERUSER"),
        Defect.BYPASSRLS: (f"{prefix}_bypass", "LOGIN NOSUPERUSER BYPASSRLS"),
    }
    libpq = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        for name, attributes in made.values():
            admin.execute(f'CREATE ROLE "{name}" {attributes}')
    try:
        urls = {
            defect: base.set(username=name, password=None, database=database).render_as_string(
                hide_password=False
            )
            for defect, (name, _) in made.items()
        }
        yield {**urls, Defect.TABLE_OWNER: postgres.admin_url}
    finally:
        with psycopg.connect(libpq, autocommit=True) as admin:
            for name, _ in made.values():
                admin.execute(f'DROP ROLE IF EXISTS "{name}"')


EXPECTED = {
    Defect.SUPERUSER: r"is a superuser: row-level security would not apply",
    Defect.BYPASSRLS: r"has BYPASSRLS: row-level security would not apply",
    Defect.TABLE_OWNER: r"owns \d+ tables \(alembic_version, dispatch_queue, events, \.\.\.\): "
    r"an owner can switch row-level security off",
}


@pytest.mark.postgres
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("defect", list(EXPECTED), ids=[d.value for d in EXPECTED])
def test_unsafe_database_role_stops_start_up_with_one_line(
    unsafe_roles: dict[Defect, str], defect: Defect, command: str, tmp_path: Path
) -> None:
    url = unsafe_roles[defect]
    role = make_url(url).username
    result = run_wfe(environment(tmp_path, WFE_DATABASE_URL=url), command)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert re.fullmatch(
        f"role '{re.escape(str(role))}' {EXPECTED[defect]}; {re.escape(REMEDY)}", line
    ), line


@pytest.mark.postgres
def test_preflight_reports_defects_as_data_and_passes_the_service_role(
    postgres: ThrowawayDatabase, unsafe_roles: dict[Defect, str]
) -> None:
    assert role_defects(postgres.service_url) == []
    for defect, url in unsafe_roles.items():
        assert [found.code for found in role_defects(url)] == [defect]


@pytest.mark.postgres
def test_a_member_of_the_owner_role_is_refused_as_an_owner(postgres: ThrowawayDatabase) -> None:
    """Ownership is inherited: a member of the owner role bypasses its tables' policies too."""
    base = make_url(postgres_admin_url())
    member = f"wfe_t_{uuid.uuid4().hex[:10]}_member"
    libpq = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{member}" LOGIN IN ROLE "{postgres.owner_role}"')
    try:
        url = make_url(postgres.service_url).set(username=member)
        found = role_defects(url.render_as_string(hide_password=False))
        assert [(d.code, d.role) for d in found] == [(Defect.TABLE_OWNER, member)]
    finally:
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{member}"')


def test_an_unreachable_database_stops_start_up_as_unchecked(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://wfe_service@127.0.0.1:{free_port()}/wfe"
    assert [d.code for d in role_defects(url)] == [Defect.UNCHECKED]
    result = run_wfe(environment(tmp_path, WFE_DATABASE_URL=url), "worker")
    line = refusal(result)
    assert line.startswith("role 'wfe_service' could not be checked (")
    assert line.endswith("an unchecked role may bypass row-level security, so start-up is refused")


def test_sqlite_is_not_checked(tmp_path: Path) -> None:
    assert role_defects(f"sqlite+aiosqlite:///{tmp_path / 'wfe.db'}") == []


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_misspelt_setting_stops_start_up_naming_the_closest(command: str, tmp_path: Path) -> None:
    env = environment(tmp_path, WFE_DATABSE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    arguments = ["--address", f"127.0.0.1:{free_port()}"] if command == "dev" else []
    line = refusal(run_wfe(env, command, *arguments))
    assert "unknown setting WFE_DATABSE_URL; did you mean WFE_DATABASE_URL?" in line
    assert not (tmp_path / "data").exists(), "refused only after touching the data dir"


def test_client_and_test_variables_do_not_stop_start_up(tmp_path: Path) -> None:
    env = environment(
        tmp_path,
        WFE_ADDRESS="127.0.0.1:50051",
        WFE_TENANT="demo-free",
        WFE_TOKEN="t",
        WFE_TOKEN_FREE="t",
        WFE_TOKEN_ENTERPRISE="t",
        WFE_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        WFE_TEST_BROKER_URL="redis://127.0.0.1:6379/0",
        WFE_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:5672//",
    )
    result = run_wfe(env, "migrate")
    assert result.returncode == 0, result.stderr
    assert "database is at the latest schema" in result.stdout
