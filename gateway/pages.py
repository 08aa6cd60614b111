"""The gateway's browser pages: the live page at `/`, the API docs at `/api/docs`.

Both are plain HTML, CSS and JavaScript shipped in `gateway/static/` (served at `/static/`),
with no build step and nothing fetched from elsewhere, so they work offline. The docs page
renders `/api/openapi.json`, the OpenAPI document of the gateway's own routes
(`gateway.openapi`). The live page signs in with a token and a tenant kept in
sessionStorage, lists and starts executions over REST, and follows one with seed 004's
`monitorWorkflowExecution` over the WebSocket, drawing the workflow's Mermaid diagram with
`static/flowchart.js`.

Pass `routes()` to `create_app(..., routes=...)`. The pages send a Content-Security-Policy
that admits only the gateway's own scripts, styles and connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.openapi import openapi_document
from gateway.routes import build_routes

STATIC: Final = Path(__file__).resolve().parent / "static"
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def routes() -> list[BaseRoute]:
    """The pages, the OpenAPI document and their assets, for `create_app(routes=...)`."""
    return [
        Route("/", _page("live.html"), methods=["GET"], name="live_page"),
        Route("/api/docs", _page("docs.html"), methods=["GET"], name="api_docs"),
        Route("/api/openapi.json", openapi_json, methods=["GET"], name="openapi"),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def _page(name: str) -> Callable[[Request], Awaitable[Response]]:
    path = STATIC / name

    async def page(request: Request) -> Response:
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    return page


async def openapi_json(request: Request) -> Response:
    """The OpenAPI document of the app's own routes, built once per app."""
    state = request.app.state
    document = getattr(state, "openapi", None)
    if document is None:
        router = getattr(state, "router", None)
        document = state.openapi = openapi_document(
            router.routes if router is not None else build_routes()
        )
    return JSONResponse(document, headers={"Cache-Control": "no-cache"})
