"""The pages as HTTP: what `/`, `/api/docs` and `/static/` answer, and what the pages hold."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway import create_app, pages
from tests.gateway.calls import error_of

STATIC = Path(pages.__file__).resolve().parent / "static"
SEED_COPY = Path(__file__).resolve().parent / "js" / "monitor.mjs"
FUNCTION = re.compile(r"^const monitorWorkflowExecution = .*?^};$", re.MULTILINE | re.DOTALL)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app("127.0.0.1:9", routes=pages.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@pytest.mark.parametrize(("path", "script"), [("/", "live.js"), ("/api/docs", "docs.js")])
async def test_a_page_is_html_that_runs_only_the_gateways_own_scripts(
    client: httpx.AsyncClient, path: str, script: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert f'<script type="module" src="/static/{script}">' in response.text
    assert "http://" not in response.text and "https://" not in response.text  # nothing remote


async def test_every_asset_a_page_names_is_served(client: httpx.AsyncClient) -> None:
    for page in ("live.html", "docs.html"):
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', (STATIC / page).read_text()):
            response = await client.get(asset)
            assert response.status_code == 200, asset
    for module in STATIC.glob("*.js"):
        for imported in re.findall(r'from "\./([^"]+)"', module.read_text()):
            assert (STATIC / imported).is_file(), (module.name, imported)
        script = await client.get(f"/static/{module.name}")
        assert script.headers["content-type"].startswith("text/javascript")


async def test_the_pages_routes_refuse_as_the_api_does(client: httpx.AsyncClient) -> None:
    error_of(await client.post("/"), 405, "method_not_allowed")
    error_of(await client.delete("/api/openapi.json"), 405, "method_not_allowed")
    error_of(await client.get("/static/missing.js"), 404, "not_found")


def test_the_pages_monitor_is_the_seeds_function_as_written_but_its_base_url() -> None:
    """The page's copy and the one Node runs (tests/gateway/js) are both seed 004's."""
    page = FUNCTION.search((STATIC / "monitor.js").read_text())
    node = FUNCTION.search(SEED_COPY.read_text())
    assert page is not None and node is not None
    same = page.group(0).replace("${MONITOR_BASE_URL}", "${BASE_URL}")
    assert same == node.group(0)
    assert "wss://api.domain.com" not in page.group(0)
