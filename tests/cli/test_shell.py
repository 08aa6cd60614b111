"""The lines `wfe dev` and `wfe env` print work when pasted into a shell."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import LiveDev

ROOT = Path(__file__).resolve().parents[2]
WFE = f"{shlex.quote(sys.executable)} -m cli.main"


def in_bash(live: LiveDev, script: str) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh bash, with no WFE_* variable but the server's data dir."""
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=live.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_wfe_dev_prints_one_export_line_per_demo_tenant(live_dev: LiveDev) -> None:
    exports = live_dev.exports
    assert set(exports) == {"demo-free", "demo-pro", "demo-enterprise"}
    for line in exports.values():
        variables = live_dev.variables(line)
        assert set(variables) == {"WFE_ADDRESS", "WFE_TENANT", "WFE_TOKEN"}
        assert variables["WFE_ADDRESS"] == live_dev.address
    assert not any("WFE_TOKEN_" in line for line in live_dev.lines)


def test_each_line_wfe_dev_prints_works_when_pasted(live_dev: LiveDev) -> None:
    for tenant, line in live_dev.exports.items():
        pasted = in_bash(live_dev, f"{line}\n{WFE} tenant info --json")
        assert pasted.returncode == 0, pasted.stderr
        assert json.loads(pasted.stdout)["id"] == tenant


def test_wfe_env_switches_the_tenant_a_shell_acts_as(live_dev: LiveDev) -> None:
    script = (
        f"{live_dev.exports['demo-free']}\n"
        f'eval "$({WFE} env --tier enterprise)"\n'
        f"{WFE} tenant info --json\n"
        f'eval "$({WFE} env --tenant demo-pro)"\n'
        f"{WFE} tenant info --json\n"
    )
    switched = in_bash(live_dev, script)
    assert switched.returncode == 0, switched.stderr
    answers = switched.stdout.replace("}\n{", "}\x00{").split("\x00")
    assert [json.loads(answer)["id"] for answer in answers] == ["demo-enterprise", "demo-pro"]
