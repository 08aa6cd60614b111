"""The gRPC floor: a grpc.aio server whose one unary method does nothing.

It runs as its own process like `wfe serve`, with the service's server options and
RPC limit, and answers any request bytes with an empty message. What StartExecution
costs above this is the service's: interceptors, token checks, the database, publishing.
`python -m bench.noop_server` prints `noop listening on HOST:PORT` once it serves.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import grpc
from grpc import aio

from foundation.settings import Settings
from service.server import server_options

SERVICE: Final = "bench.v1.Noop"
METHOD: Final = f"/{SERVICE}/Call"


async def _call(request: bytes, context: Any) -> bytes:
    return b""


async def serve() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    server = aio.server(
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(_call)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"noop listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve())
