"""Subscriber processes for the stream benchmarks: many server streams, read and timed.

One Python process reading tens of thousands of messages a second would be the
bottleneck itself, so the streams are spread over a few processes, each with its own
event loop and one channel (HTTP/2 connection) per stream, as that many separate clients
would have. Both sides of a comparison use the same layout and this same reading code;
only the method and the request differ.

A stream is settled once its first event arrives (or it fails); a process reports when
all of its streams are. The coordinator then sets a window of wall-clock time: messages
received inside it are counted, and for each `workflow_execution_log` event among them
the latency is its receive time minus the time its line carries (stamped by its writer
on the same machine's clock). A process stops reading at the window's end; a window
ending at infinity keeps it reading until a later window ends it.

Each process is `python -m bench.subscribers`, talking to the coordinator in pickles
framed by length on its stdin and stdout, so that it imports the clients and nothing
else (a multiprocessing child would import the bench's whole main module first).
"""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import grpc
import websockets
from grpc import aio

from wfe.v1 import event_pb2

LOG_EVENT: Final = "workflow_execution_log"
CLIENT_OPTIONS: Final = [("grpc.use_local_subchannel_pool", 1)]
"""Each channel its own connection (the same as `bench.floors.CLIENT_OPTIONS`)."""

Metadata = tuple[tuple[str, str], ...]
Window = tuple[float, float]
FRAME: Final = struct.Struct("!Q")


@dataclass(frozen=True)
class StreamSpec:
    """One stream to open: the method, the serialised request and its call metadata.

    A method starting `ws://` is a WebSocket of the gateway instead: `request` is the
    subscribe message (JSON) and `metadata` the upgrade's headers.
    """

    method: str
    request: bytes
    metadata: Metadata


@dataclass
class Report:
    """What the streams of one or more processes received."""

    latencies: list[float] = field(default_factory=list)
    """Seconds from stamp to receipt, for the log events received in the window."""
    in_window: int = 0
    """Events (not heartbeats) received in the window."""
    stamps: set[float] = field(default_factory=set)
    """The distinct stamps of the log events both stamped and received in the window."""
    per_stream: list[int] = field(default_factory=list)
    """Events each stream received in all."""
    errors: dict[str, int] = field(default_factory=dict)
    """Streams that ended with an error, by status code."""
    first_errors: dict[str, tuple[float, str]] = field(default_factory=dict)
    """When the first error of each status code came (wall clock), and its details."""

    def merge(self, other: Report) -> None:
        self.latencies.extend(other.latencies)
        self.in_window += other.in_window
        self.stamps |= other.stamps
        self.per_stream.extend(other.per_stream)
        for code, count in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + count
        for code, (at, text) in other.first_errors.items():
            if at < self.first_errors.get(code, (math.inf, ""))[0]:
                self.first_errors[code] = (at, text)


class _Reader:
    """The streams of one process and what they have received."""

    def __init__(self, count: int, settled: Callable[[], None]) -> None:
        self.window: Window = (math.inf, math.inf)
        self.latencies = array("d")
        self.in_window = 0
        self.stamps: set[float] = set()
        self.per_stream = [0] * count
        self.errors: dict[str, int] = {}
        self.first_errors: dict[str, tuple[float, str]] = {}
        self.stopping = False
        """The window has ended and the streams are being cancelled: no more errors."""
        self._unsettled = count
        self._settled = settled

    def settle(self) -> None:
        self._unsettled -= 1
        if self._unsettled == 0:
            self._settled()

    async def read(self, channel: aio.Channel, spec: StreamSpec, index: int) -> None:
        subscribe = channel.unary_stream(
            spec.method, response_deserializer=event_pb2.SubscribeResponse.FromString
        )
        settled = False
        try:
            async for answer in subscribe(spec.request, metadata=spec.metadata):
                received = time.time()
                event = answer.event
                if event.event_id == 0:  # a heartbeat
                    continue
                if not settled:
                    settled = True
                    self.settle()
                self.per_stream[index] += 1
                start, end = self.window
                if start <= received < end:
                    self.in_window += 1
                    if event.type == LOG_EVENT:
                        stamped = float(event.workflow_execution_log.message)
                        self.latencies.append(received - stamped)
                        if stamped >= start:
                            self.stamps.add(stamped)
        except grpc.RpcError as error:
            if self.stopping:
                return
            code, text = "UNKNOWN", str(error)
            if isinstance(error, aio.AioRpcError):
                code, text = error.code().name, error.details() or ""
            self.errors[code] = self.errors.get(code, 0) + 1
            self.first_errors.setdefault(code, (time.time(), text[:160]))
            if not settled:
                self.settle()

    async def read_socket(self, spec: StreamSpec, index: int) -> None:
        """As `read`, over the gateway's WebSocket: its JSON events, the same counting."""
        settled = False

        def failed(code: str, text: str) -> None:
            nonlocal settled
            self.errors[code] = self.errors.get(code, 0) + 1
            self.first_errors.setdefault(code, (time.time(), text[:160]))
            if not settled:
                settled = True
                self.settle()

        try:
            async with websockets.connect(
                spec.method,
                additional_headers=dict(spec.metadata),
                max_size=None,
                open_timeout=120,
                ping_interval=None,
            ) as socket:
                await socket.send(spec.request.decode())
                async for text in socket:
                    received = time.time()
                    message = json.loads(text)
                    if message.get("event") == "error":
                        failed(str(message.get("error", {}).get("code")), str(text))
                        continue
                    if not message.get("event_id"):  # authenticated, subscribed, heartbeat
                        continue
                    if not settled:
                        settled = True
                        self.settle()
                    self.per_stream[index] += 1
                    start, end = self.window
                    if start <= received < end:
                        self.in_window += 1
                        if message.get("event") == LOG_EVENT:
                            stamped = float(message["message"])
                            self.latencies.append(received - stamped)
                            if stamped >= start:
                                self.stamps.add(stamped)
        except (websockets.WebSocketException, OSError, TimeoutError) as error:
            if self.stopping:
                return
            failed(type(error).__name__, str(error))

    def report(self) -> Report:
        return Report(
            list(self.latencies),
            self.in_window,
            self.stamps,
            self.per_stream,
            self.errors,
            self.first_errors,
        )


def send(stream: IO[bytes], item: Any) -> None:
    data = pickle.dumps(item)
    stream.write(FRAME.pack(len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        raise EOFError("the coordinator went away")
    return pickle.loads(stream.read(FRAME.unpack(header)[0]))


async def _follow(reader: _Reader) -> None:
    """Take each window the coordinator sends, until one that ends."""
    while True:
        window: Window = await asyncio.to_thread(receive, sys.stdin.buffer)
        reader.window = window
        if math.isfinite(window[1]):
            return


async def _consume(target: str, specs: Sequence[StreamSpec]) -> Report:
    reader = _Reader(len(specs), lambda: send(sys.stdout.buffer, "settled"))
    channels: list[aio.Channel] = []
    streams = []
    for index, spec in enumerate(specs):
        if spec.method.startswith("ws://"):
            streams.append(asyncio.create_task(reader.read_socket(spec, index)))
            continue
        channel = aio.insecure_channel(target, options=CLIENT_OPTIONS)
        channels.append(channel)
        streams.append(asyncio.create_task(reader.read(channel, spec, index)))
    await _follow(reader)  # returns with the window that ends
    await asyncio.sleep(max(reader.window[1] - time.time(), 0.0))
    reader.stopping = True
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    await asyncio.gather(*(channel.close() for channel in channels))
    return reader.report()


def main() -> None:
    """The process: streams from stdin, "settled" and then the report on stdout."""
    target, specs = receive(sys.stdin.buffer)
    send(sys.stdout.buffer, asyncio.run(_consume(target, specs)))


class _Process:
    """One subscriber process and its pipes."""

    def __init__(self, target: str, specs: Sequence[StreamSpec], log: Path) -> None:
        self.log = log
        with open(log, "ab") as errors:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "bench.subscribers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.stdin, self.stdout = self.popen.stdin, self.popen.stdout
        send(self.stdin, (target, list(specs)))

    def receive(self) -> Any:
        try:
            return receive(self.stdout)
        except (EOFError, pickle.UnpicklingError):
            code = self.popen.wait(10)
            raise RuntimeError(f"a subscriber process ended ({code}); see {self.log}") from None


class Subscribers:
    """`len(specs)` streams over `processes` processes; see the module docstring."""

    def __init__(
        self, target: str, specs: Sequence[StreamSpec], processes: int, log_dir: Path
    ) -> None:
        shares = [list(specs[i::processes]) for i in range(processes)]
        self._processes = [
            _Process(target, share, log_dir / f"subscribers-{n}.log")
            for n, share in enumerate(shares)
            if share
        ]

    async def _each(self, what: str, patience: float) -> list[Any]:
        """One message from every process, within `patience` seconds."""
        try:
            async with asyncio.timeout(patience):
                return list(
                    await asyncio.gather(*(asyncio.to_thread(p.receive) for p in self._processes))
                )
        except TimeoutError:
            raise TimeoutError(f"subscribers: no {what} after {patience:g}s") from None

    async def settled(self, patience: float = 120.0) -> None:
        """Until every stream got its first event or failed."""
        await self._each("first events", patience)

    def window(self, start: float, end: float) -> None:
        """Count what arrives from `start` to `end` (wall clock); stop reading at `end`."""
        for process in self._processes:
            send(process.stdin, (start, end))

    async def report(self, patience: float = 120.0) -> Report:
        """What every process received, once the window has ended."""
        total = Report()
        for found in await self._each("report", patience):
            total.merge(found)
        return total

    async def close(self) -> None:
        """End every process: a window that has ended, then a wait, then a kill."""
        for process in self._processes:
            try:
                send(process.stdin, (0.0, 0.0))
                process.stdin.close()
            except OSError:
                pass  # it has already ended
        for process in self._processes:
            try:
                await asyncio.to_thread(process.popen.wait, 10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                await asyncio.to_thread(process.popen.wait, 5)
            process.stdout.close()


if __name__ == "__main__":
    # Run as `bench.subscribers`, not `__main__`, so that the report unpickles as such.
    from bench.subscribers import main as run

    run()
