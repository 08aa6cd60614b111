"""The streaming floor: a grpc.aio server whose one server-streaming method fans out a ticker.

It is the least a lossless live fan-out does, in its own process like `wfe serve`, with
the service's server options and RPC limit: a group's ticker makes `rate` messages a
second, each serialised once and appended to the group's log in memory, and every stream
of the group follows that log with a cursor of its own, woken by one shared event. No
database, tenants, tokens or topics, and one serialisation per message however many
streams send it; what `EventService.Subscribe` costs above this is the service's.

A request is a `SubscribeRequest` whose one topic is `floor:<run>/<group>:<rate>`. A
group's log starts with one message, so that each stream has an event as soon as it is
open (the system's streams replay one, see `bench.streams`). Its ticker starts when the
unary `Start` names its run (the bytes of the run's name), once every stream is open, so
that setting up the streams never competes with the load (the system's writer waits
likewise), and stops with the group's last stream. Each message is the
`SubscribeResponse` the service would send for a `workflow_execution_log` event whose
line is the wall-clock time it was made, so both sides' clients read and time it alike.
`python -m bench.stream_floor` prints `stream-floor listening on HOST:PORT` once it serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from foundation.settings import Settings
from service.server import server_options
from wfe.v1 import event_pb2

SERVICE: Final = "bench.v1.StreamFloor"
METHOD: Final = f"/{SERVICE}/Subscribe"
START_METHOD: Final = f"/{SERVICE}/Start"


def topic(run: str, group: int, rate: float) -> str:
    """The topic of a group of streams of `run` sharing `rate` messages a second."""
    return f"floor:{run}/{group}:{rate!r}"


def message(event_id: int, group: str, made: float) -> bytes:
    """A serialised SubscribeResponse like the service's for a log line stamped `made`."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int(made * 1e9))
    event = event_pb2.Event(
        event_id=event_id,
        type="workflow_execution_log",
        event_time=stamp,
        workflow_id=f"wf-{group}",
        execution_id=f"ex-{group}",
        workflow_execution_log=event_pb2.WorkflowExecutionLog(
            step_id="bench", level="info", message=repr(made)
        ),
    )
    return bytes(event_pb2.SubscribeResponse(event=event).SerializeToString())


class Group:
    """One ticker's messages, in order, and the streams following them."""

    def __init__(self, name: str, rate: float) -> None:
        self.name = name
        self.run = name.split("/")[0]
        self.rate = rate
        self.log = [message(1, name, time.time())]
        self.changed = asyncio.Event()
        self.streams = 0
        self.ticker: asyncio.Task[None] | None = None

    def publish(self, item: bytes) -> None:
        self.log.append(item)
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()

    async def tick(self) -> None:
        """`rate` messages a second on an absolute schedule: a late tick catches up."""
        began = time.monotonic()
        made = 0
        while True:
            made += 1
            delay = began + made / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.publish(message(made + 1, self.name, time.time()))


class StreamFloor:
    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}

    def _join(self, name: str) -> Group:
        _, group_name, rate = name.split(":")
        group = self._groups.get(group_name)
        if group is None:
            group = self._groups[group_name] = Group(group_name, float(rate))
        group.streams += 1
        return group

    async def start(self, request: bytes, context: Any) -> bytes:
        """Start the tickers of the run the request names."""
        run = request.decode()
        for group in self._groups.values():
            if group.run == run and group.ticker is None:
                group.ticker = asyncio.get_running_loop().create_task(group.tick())
        return b""

    def _leave(self, group: Group) -> None:
        group.streams -= 1
        if group.streams == 0 and self._groups.get(group.name) is group:
            del self._groups[group.name]
            if group.ticker is not None:
                group.ticker.cancel()

    async def subscribe(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        """Every message of the group, in order."""
        parsed = event_pb2.SubscribeRequest.FromString(request)
        group = self._join(parsed.topics[0])
        cursor = 0
        try:
            while True:
                if cursor < len(group.log):
                    yield group.log[cursor]
                    cursor += 1
                else:
                    await group.changed.wait()
        finally:
            self._leave(group)


async def serve() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    server = aio.server(
        options=server_options(settings),
        # The service's limit, and room for the one `Start` call beside that many streams.
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs + 1,
    )
    floor = StreamFloor()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Subscribe": grpc.unary_stream_rpc_method_handler(floor.subscribe),
            "Start": grpc.unary_unary_rpc_method_handler(floor.start),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"stream-floor listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve())
