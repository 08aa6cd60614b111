"""The gateway's pages in a real browser: headless Chromium driven by Selenium.

The gateway serves its pages (`gateway.pages.routes()`) on uvicorn in this process, in front
of the test server. Selenium's calls block while the gateway and the server run on this
test's loop, so every browser call runs in a thread (`Browser`). Without Chromium and
chromedriver (`apt-get install chromium chromium-driver`) the tests are skipped, except with
CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from grpc import aio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from starlette.applications import Starlette

from gateway import create_app, pages
from gateway.openapi import openapi_document
from gateway.routes import build_routes
from service.server import RunningServer
from service.workflows.diagram import mermaid
from tests.conftest import NewTenant, auth, require, token
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    executions,
    get,
    http,
    start,
    step,
    wait_until,
    workflow,
)
from wfe.v1 import execution_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "live-page.png"
PATIENCE = 30.0
T = TypeVar("T")


class _InLoop(uvicorn.Server):
    """uvicorn on the test's loop, leaving the signals to pytest."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False
    )
    server = _InLoop(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise AssertionError("uvicorn stopped before it listened")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    missing = "Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
    require(None if binary and driver else missing, "Chromium and chromedriver")
    assert binary is not None and driver is not None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1300")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
async def live_gateway(server: RunningServer) -> AsyncIterator[str]:
    """The gateway with its pages, calling the test server."""
    async with serving(create_app(f"127.0.0.1:{server.port}", routes=pages.routes())) as url:
        yield url


@pytest.fixture(scope="module")
async def pages_only() -> AsyncIterator[str]:
    """The gateway with its pages and no server behind it: for pages that call no RPC."""
    async with serving(create_app("127.0.0.1:9", routes=pages.routes())) as url:
        yield url


class Browser:
    """The driver, called from a thread so the loop keeps serving the page's requests."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    async def __call__(self, action: Callable[[WebDriver], T]) -> T:
        return await asyncio.to_thread(action, self.driver)

    async def until(self, condition: Callable[[WebDriver], T], what: str) -> T:
        wait = WebDriverWait(self.driver, PATIENCE, poll_frequency=0.05)
        return await asyncio.to_thread(wait.until, condition, what)

    async def script(self, source: str, *arguments: Any) -> Any:
        return await self(lambda driver: driver.execute_script(source, *arguments))

    async def console_errors(self) -> list[str]:
        entries = await self(lambda driver: driver.get_log("browser"))  # type: ignore[no-untyped-call]
        return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]


def sign_in(bearer: str, tenant: str) -> Callable[[WebDriver], None]:
    def fill(driver: WebDriver) -> None:
        driver.find_element(By.ID, "token").send_keys(bearer)
        driver.find_element(By.ID, "tenant").send_keys(tenant)
        driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()

    return fill


def start_workflow(workflow_id: str) -> Callable[[WebDriver], None]:
    def choose(driver: WebDriver) -> None:
        Select(driver.find_element(By.ID, "workflow")).select_by_value(workflow_id)
        driver.find_element(By.ID, "start").click()

    return choose


def record_where(check: str) -> Callable[[WebDriver], Any]:
    """The page's `window.__wfe` once `check` (JavaScript on `r`, the record) holds."""
    return lambda driver: driver.execute_script(
        f"const r = window.__wfe; return r && ({check}) ? r : null;"
    )


async def test_the_live_page_follows_an_execution_to_completion_with_the_seeds_monitor(
    chromium: WebDriver,
    live_gateway: str,
    channel: aio.Channel,
    new_tenant: NewTenant,
    effects: Effects,
) -> None:
    """The execution waits in the queue (one may run at a time, and another holds the slot)
    until the page's socket is streaming, so the seed's monitor sees it from its start."""
    tenant = await new_tenant("enterprise", {"max_concurrent_executions": 1})
    holding = workflow(
        step("input", "input", "hold", name="Input"),
        http("hold", "done", effects.url(sleep=60)),
        step("done", "output", name="Done", config={"values": {}}),
    )
    blocker = await start(channel, tenant, await active_workflow(channel, tenant, holding))
    await wait_until(
        channel,
        tenant,
        blocker.id,
        frozenset({execution_pb2.EXECUTION_STATUS_IN_PROGRESS}),
        where=lambda e: e.current_step == "hold",
    )
    live = workflow(
        step("input", "input", "fetch", name="Input"),
        http("fetch", "done", effects.url(sleep=1), name="Fetch the record"),
        step("done", "output", name="Done", config={"values": {"fetched": True}}),
    )
    workflow_id = await active_workflow(channel, tenant, live)
    page = Browser(chromium)

    await page(lambda driver: driver.get(live_gateway + "/"))
    await page(sign_in(token([tenant]), tenant))
    option = f'#workflow option[value="{workflow_id}"]'
    await page.until(lambda d: d.find_elements(By.CSS_SELECTOR, option), "the workflow listed")
    await page(start_workflow(workflow_id))
    record = await page.until(record_where("r.executionId && r.streaming"), "the page streaming")
    execution_id = record["executionId"]
    assert (await get(channel, tenant, execution_id)).status == (
        execution_pb2.EXECUTION_STATUS_QUEUED
    )
    await executions(channel).CancelExecution(
        execution_pb2.CancelExecutionRequest(execution_id=blocker.id), metadata=auth(tenant)
    )
    record = await page.until(record_where("r.closeCode !== null"), "the monitor closed")

    assert record["closeCode"] == 1000
    assert record["completion"] == "completed"
    order = [call["callback"] for call in record["callbacks"]]
    first = {name: order.index(name) for name in ("onUpdate", "onStepCompleted", "onCompleted")}
    assert first["onUpdate"] < first["onStepCompleted"] < first["onCompleted"] == len(order) - 1
    completed = [
        c["data"]["step_id"]
        for c in record["callbacks"]
        if c["event"] == ("workflow_step_completed")
    ]
    assert completed == ["input", "fetch", "done"]
    assert ["fetch", "running"] in record["diagram"]
    assert record["diagram"].index(["fetch", "running"]) < record["diagram"].index(
        ["fetch", "completed"]
    )
    assert await page.script("return document.getElementById('progress').value") == 100
    assert await page.script("return document.getElementById('progress-text').textContent") == (
        "100%"
    )
    drawn = await page.script(
        "return [...document.querySelectorAll('#diagram svg .node')].map(g => ({"
        "step: g.dataset.stepId, state: g.dataset.state, classes: g.getAttribute('class')}))"
    )
    assert [(n["step"], n["state"]) for n in drawn] == [
        ("input", "completed"),
        ("fetch", "completed"),
        ("done", "completed"),
    ]
    assert all("state-completed" in n["classes"] for n in drawn)
    listed = f'#executions tr[data-execution-id="{execution_id}"]'
    await page.until(lambda d: d.find_elements(By.CSS_SELECTOR, listed), "the execution listed")
    assert await page.console_errors() == []
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page(lambda driver: driver.save_screenshot(str(SCREENSHOT)))
    assert SCREENSHOT.stat().st_size > 0


def _every_shape() -> dict[str, Any]:
    """A workflow with every node shape, labelled edges, a cycle and both style classes."""
    return workflow(
        step("start", "input", "check", name='Is it "big"? #1'),
        step(
            "check",
            "condition",
            name="Check size",
            config={
                "conditions": [{"condition": "$.start.size > 10", "next": "each"}],
                "default": "fanout",
            },
        ),
        step("each", "loop", "done", name="Each item", config={"body": "work"}),
        step("work", "tool", "each", name="Work"),
        step("fanout", "parallel", "done", name="Fan out", config={"branches": ["a", "b"]}),
        step("a", "tool", "done", name="A"),
        step("b", "tool", "done", name="B"),
        step("done", "output", name="Done"),
    )


RENDER = """
const [source, done] = [arguments[0], arguments[arguments.length - 1]];
import("/static/flowchart.js").then((flowchart) => {
  const holder = document.createElement("div");
  document.body.append(holder);
  const chart = flowchart.render(source, holder);
  const nodes = [...chart.svg.querySelectorAll(".node")].map((g) => {
    const box = g.getBBox();
    return { id: g.dataset.nodeId, shape: g.dataset.shape, label: g.dataset.label,
             fill: g.querySelector(".node-shape").getAttribute("fill"),
             x: box.x, y: box.y, width: box.width, height: box.height };
  });
  const edges = [...chart.svg.querySelectorAll(".edge")].map((g) => ({
    from: g.dataset.from, to: g.dataset.to, around: g.classList.contains("edge-around"),
    label: g.querySelector(".edge-label title")?.textContent ?? null }));
  let refused = null;
  try {
    flowchart.parse("flowchart TD\\n    s0 --- s1\\n");
  } catch (error) {
    refused = error.message;
  }
  holder.remove();
  done({ nodes, edges, refused });
}).catch((error) => done({ failure: String(error) }));
"""
EDGE_LINE = re.compile(r'^\s+(s\d+) -->(?:\|"([^"]*)"\|)? (s\d+)$', re.MULTILINE)


async def test_flowchart_js_draws_every_node_and_edge_the_diagram_emits_top_down(
    chromium: WebDriver, pages_only: str
) -> None:
    source = mermaid(_every_shape())
    page = Browser(chromium)
    await page(lambda driver: driver.get(pages_only + "/"))
    drawn = await page(lambda driver: driver.execute_async_script(RENDER, source))
    assert "failure" not in drawn, drawn["failure"]
    nodes = {node["id"]: node for node in drawn["nodes"]}
    assert [(n["id"], n["shape"]) for n in drawn["nodes"]] == [
        ("s0", "stadium"),
        ("s1", "rhombus"),
        ("s2", "subroutine"),
        ("s3", "rectangle"),
        ("s4", "subroutine"),
        ("s5", "rectangle"),
        ("s6", "rectangle"),
        ("s7", "stadium"),
    ]
    assert nodes["s0"]["label"] == 'Is it "big"? #1 (input)'  # Mermaid's entities decoded
    assert (nodes["s0"]["fill"], nodes["s2"]["fill"]) == ("#e8f1ff", "#fff3dd")  # classDef
    emitted = {(a, b, label or None) for a, label, b in EDGE_LINE.findall(source)}
    assert {(e["from"], e["to"], e["label"]) for e in drawn["edges"]} == emitted
    assert ("s1", "s2", "$.start.size > 10") in emitted and ("s1", "s4", "default") in emitted
    for edge in drawn["edges"]:
        upper, lower = nodes[edge["from"]], nodes[edge["to"]]
        if edge["around"]:
            assert (edge["from"], edge["to"]) == ("s3", "s2")  # the loop's way back
        else:
            assert lower["y"] >= upper["y"] + upper["height"], edge
    boxes = list(nodes.values())
    for index, one in enumerate(boxes):
        for other in boxes[index + 1 :]:
            apart = (
                one["x"] + one["width"] <= other["x"]
                or other["x"] + other["width"] <= one["x"]
                or one["y"] + one["height"] <= other["y"]
                or other["y"] + other["height"] <= one["y"]
            )
            assert apart, (one, other)
    assert drawn["refused"].startswith("line 2: not in the supported subset")
    assert await page.console_errors() == []


async def test_the_docs_page_renders_every_operation_and_schema_of_the_document(
    chromium: WebDriver, pages_only: str
) -> None:
    document = openapi_document(build_routes())
    page = Browser(chromium)
    await page(lambda driver: driver.get(pages_only + "/api/docs"))
    ready = "return document.body.dataset.ready || null"
    assert await page.until(lambda d: d.execute_script(ready), "the document rendered") == "true"
    operations = await page.script(
        "return [...document.querySelectorAll('article.operation')].map(a => a.id)"
    )
    expected = [
        f"op-{operation['operationId']}"
        for item in document["paths"].values()
        for operation in item.values()
    ]
    assert sorted(operations) == sorted(expected)
    schemas = await page.script("return [...document.querySelectorAll('section.schema')].length")
    assert schemas == len(document["components"]["schemas"])
    errors = await page.script("return document.getElementById('errors').textContent")
    assert all(key in errors for key in ("code", "message", "details", "request_id"))
    watch = await page.script(
        "return document.getElementById('op-ExecutionService_WatchExecution').textContent"
    )
    assert "text/event-stream" in watch and "WatchExecutionResponse" in watch
    assert await page.console_errors() == []
