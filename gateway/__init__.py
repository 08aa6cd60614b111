"""The REST and WebSocket gateway: frontends' HTTP in, `wfe serve`'s gRPC out.

`create_app` builds the ASGI application; `gateway.routes` reads the REST routes from the
protos' `google.api.http` annotations, `gateway.transcode` turns JSON into requests and
answers into JSON, `gateway.errors` writes seed 004's error body, and `gateway.streaming`
serves the streaming RPCs as Server-Sent Events.
"""

from gateway.app import create_app
from gateway.errors import STATUS_TO_HTTP, GatewayError, error_body, rpc_error_body
from gateway.routes import Route, Router, build_routes

__all__ = [
    "STATUS_TO_HTTP",
    "GatewayError",
    "Route",
    "Router",
    "build_routes",
    "create_app",
    "error_body",
    "rpc_error_body",
]
