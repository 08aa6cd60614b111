"""`wfe dev` serves the REST gateway and prints where; `wfe gateway` runs one alone."""

from __future__ import annotations

import re
import signal
import subprocess
import threading

import httpx

from cli.web import GATEWAY_PLACES
from tests.cli.conftest import LiveDev
from tests.test_cli import WFE, free_port

LISTENING = re.compile(
    r"^gateway listening on (http://127\.0\.0\.1:\d+) \(" + re.escape(GATEWAY_PLACES) + r"\)$"
)


def tenant_over_rest(url: str, live_dev: LiveDev, tenant: str) -> httpx.Response:
    variables = live_dev.variables(live_dev.exports[tenant])
    headers = {
        "Authorization": f"Bearer {variables['WFE_TOKEN']}",
        "X-Tenant-ID": variables["WFE_TENANT"],
    }
    return httpx.get(f"{url}/api/tenant", headers=headers, timeout=30)


def test_dev_prints_the_gateway_url_and_serves_the_demo_tenants_there(live_dev: LiveDev) -> None:
    urls = [found.group(1) for line in live_dev.lines if (found := LISTENING.match(line.strip()))]
    assert len(urls) == 1, live_dev.lines
    printed = [line.strip() for line in live_dev.lines]
    assert printed.index(f"gateway listening on {urls[0]} ({GATEWAY_PLACES})") == 1  # after wfe's
    answer = tenant_over_rest(urls[0], live_dev, "demo-enterprise")
    assert answer.status_code == 200, answer.text
    assert answer.json()["tier"] == "TIER_ENTERPRISE"


def test_wfe_gateway_calls_the_server_it_targets_and_stops_on_sigterm(live_dev: LiveDev) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [*WFE, "gateway", "--address", url.removeprefix("http://"), "--target", live_dev.address],
        env=live_dev.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    listening = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith(f"gateway listening on {url} ({GATEWAY_PLACES})"):
                listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert listening.wait(30), "".join(output)
        answer = tenant_over_rest(url, live_dev, "demo-pro")
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == "demo-pro"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
        reader.join(5)
        if process.stdout:
            process.stdout.close()
    assert code == 0, "".join(output)  # stopped as `wfe serve` stops: cleanly
