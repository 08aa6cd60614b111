"""The gateway's probes: `/healthz` (the process answers) and `/readyz` (its gRPC server
reports SERVING), for a load balancer or Kubernetes to route by."""

from __future__ import annotations

from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

READY_TIMEOUT_SECONDS: Final = 2.0


async def alive(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    """Ready when the server it calls says SERVING: a gateway whose server is down or
    draining takes no traffic."""
    stub = health_pb2_grpc.HealthStub(request.app.state.channel)
    try:
        answer = await stub.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READY_TIMEOUT_SECONDS
        )
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        reason = code.name.lower() if code is not None else "unreachable"
        return JSONResponse({"status": "unavailable", "server": reason}, status_code=503)
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status).lower()
    return JSONResponse(
        {"status": "ok" if serving else "unavailable", "server": name},
        status_code=200 if serving else 503,
    )


def routes() -> list[BaseRoute]:
    return [Route("/healthz", alive, methods=["GET"]), Route("/readyz", ready, methods=["GET"])]
