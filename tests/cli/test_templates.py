"""`wfe template ...` against a live server: the catalog as the plan sees it, and drafts from it."""

from __future__ import annotations

import json

from tests.cli.conftest import LiveDev, fields


def test_template_list_says_which_templates_the_plan_may_use(live_dev: LiveDev) -> None:
    listed = live_dev.wfe("template", "list", "--json", tenant="demo-free")
    assert listed.returncode == 0, listed.stderr
    templates = json.loads(listed.stdout)["templates"]
    free = {t["id"] for t in templates if t.get("available")}
    assert "customer-enrichment" in free
    assert any(not t.get("available") for t in templates)

    table = live_dev.wfe("template", "list", "--available-only", tenant="demo-free")
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["ID", "NAME", "CATEGORY", "TIER", "AVAILABLE"]
    assert {row[0] for row in rows[1:]} == free
    assert all(row[-1] == "yes" for row in rows[1:])


def test_template_use_creates_a_draft_the_plan_allows(live_dev: LiveDev) -> None:
    used = live_dev.wfe("template", "use", "customer-enrichment", "--name", "Mine")
    assert used.returncode == 0, used.stderr
    draft = fields(used.stdout)
    assert (draft["name"], draft["status"], draft["version"]) == ("Mine", "draft", "1")

    catalog = json.loads(live_dev.wfe("template", "list", "--json", tenant="demo-free").stdout)
    beyond = next(t["id"] for t in catalog["templates"] if not t.get("available"))
    refused = live_dev.wfe("template", "use", beyond, tenant="demo-free")
    assert refused.returncode == 1
    assert " TIER_RESTRICTION: " in refused.stderr.splitlines()[0]
