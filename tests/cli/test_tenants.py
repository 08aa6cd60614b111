"""`wfe tenant info` against a live server: the caller's tier, limits and usage."""

from __future__ import annotations

import json

from tests.cli.conftest import LiveDev, fields


def test_tenant_info_shows_tier_limits_and_usage(live_dev: LiveDev) -> None:
    scripted = json.loads(live_dev.wfe("tenant", "info", "--json", tenant="demo-pro").stdout)
    assert (scripted["id"], scripted["tier"]) == ("demo-pro", "TIER_PROFESSIONAL")

    shown = live_dev.wfe("tenant", "info", tenant="demo-pro")
    assert shown.returncode == 0, shown.stderr
    assert fields(shown.stdout)["tier"] == "professional"
    table = [line.split("  ") for line in shown.stdout.split("\n\n")[1].splitlines()]
    limits = {row[0]: [cell.strip() for cell in row[1:] if cell.strip()] for row in table}
    assert limits["LIMIT"] == ["USED", "ALLOWED"]
    assert limits["workflows"] == [
        scripted["usage"].get("workflows", "0"),
        scripted["limits"]["max_workflows"],
    ]
