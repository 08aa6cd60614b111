"""CPU-heavy work of one request, in worker processes, away from the event loop and its GIL.

Validating a large definition, walking a large request or checking an input against a
tenant's schema is pure Python; run on a thread it would still take turns at the one GIL
with the event loop, and every other tenant's call would wait through those turns. A small
pool of processes runs it instead: the loop only sends the arguments and reads the answer.

Each tenant holds at most one worker at a time and may queue only a few more requests
behind it; past that a request is refused at once, so one tenant's flood of large requests
neither fills the pool nor piles up waiting calls. A deadline bounds how long a call waits
for its answer; the work itself must be bounded on its own too (validation stops at the
plan's limits), as a running task is not interrupted.

What runs here is a module-level function of picklable arguments (a thread runs it while
the workers start, so it must not rely on which process it is in). A `WfeError` it raises
reaches the caller as the same error, with its metadata and violations.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Final, TypeVar, TypeVarTuple, Unpack

from foundation.errors import FieldViolation, QuotaExhausted, Unauthenticated, WfeError, WorkTimeout
from tenancy import current_tenant

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

INLINE_BYTES: Final = 64 * 1024
"""Work on a request up to this size runs inline: sending it to a worker would cost more."""

WORKER_NICENESS: Final = 10
"""Workers run at a lower CPU priority than the server: when cores are short, the event loop
that answers every tenant comes before one tenant's heavy request."""

QUEUED_PER_TENANT: Final = 256
"""Requests of one tenant that may wait for its worker; the next one is refused at once."""

_lock = threading.Lock()
_workers = 2
_timeout = 5.0
_preload: tuple[str, ...] = ()
_pools: _Pools | None = None
_gates: dict[str, _Gate] = {}


@dataclass(slots=True)
class _Gate:
    """One tenant's turn at the pool: a lock for the running task, a count of those waiting."""

    lock: asyncio.Lock
    waiting: int = 0


@dataclass(frozen=True, slots=True)
class _Pools:
    """The worker processes, and the threads that stand in for them while they start.

    A worker takes a second or two to start and import what it runs; work that comes
    before the first one is ready runs on a thread here instead, as it would without them.
    """

    processes: ProcessPoolExecutor
    threads: ThreadPoolExecutor
    ready: threading.Event

    def executor(self) -> Executor:
        return self.processes if self.ready.is_set() else self.threads

    def shutdown(self, wait: bool) -> None:
        self.processes.shutdown(wait=wait, cancel_futures=True)
        self.threads.shutdown(wait=wait, cancel_futures=True)


def configure(workers: int, timeout_seconds: float, preload: Sequence[str] = ()) -> None:
    """Size the pool, set the deadline (from `WFE_VALIDATION_*`) and name the modules the
    workers import as they start; a new size or list takes new workers."""
    global _workers, _timeout, _preload, _pools
    with _lock:
        changed = workers != _workers or (preload and tuple(preload) != _preload)
        if _pools is not None and changed:
            _pools.shutdown(wait=False)
            _pools = None
        _workers, _timeout = workers, timeout_seconds
        _preload = tuple(preload) or _preload


def start() -> threading.Event:
    """Start the workers now, not on the first request; the event is set once one is ready."""
    return _started().ready


def _started() -> _Pools:
    global _pools
    with _lock:
        if _pools is None:
            _pools = _Pools(
                # Spawned, not forked: a fork of a process running gRPC's threads is unsafe.
                ProcessPoolExecutor(
                    _workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_prepare_worker,
                    initargs=(_preload,),
                ),
                ThreadPoolExecutor(_workers, thread_name_prefix="wfe-offload"),
                threading.Event(),
            )
            ready = _pools.ready
            _pools.processes.submit(os.getpid).add_done_callback(lambda _: ready.set())
        return _pools


def shutdown(*, now: bool = False) -> None:
    """Stop the workers (the next `run` starts new ones); `now` stops them mid-task.

    A process about to exit stops them `now`: otherwise it waits for every worker to
    finish starting and importing, seconds after the server itself has stopped.
    """
    global _pools
    with _lock:
        pools, _pools = _pools, None
    if pools is None:
        return
    if now:
        # The executor offers no public way to stop its workers before Python 3.14.
        for process in list(getattr(pools.processes, "_processes", {}).values()):
            process.terminate()
    pools.shutdown(wait=True)


async def run(function: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """`function(*args)` in a worker; WorkTimeout past the deadline (the call's answer then
    says DEADLINE_EXCEEDED, and nothing was stored)."""
    timeout = _timeout
    try:
        answer = await asyncio.wait_for(_in_turn(_tenant(), function, args), timeout)
    except TimeoutError:
        raise WorkTimeout(
            f"the request's work took longer than {timeout:g}s; send a smaller definition",
            metadata={"timeout_seconds": timeout},
        ) from None
    if isinstance(answer, _Raised):
        raise answer.error()
    return answer


async def run_sized(size: int, function: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """`function` on a request of `size` bytes: inline when small, else in a worker."""
    if size <= INLINE_BYTES:
        return function(*args)
    return await run(function, *args)


async def _in_turn(
    tenant: str, function: Callable[..., T], args: tuple[object, ...]
) -> T | _Raised:
    """Run once the tenant's earlier work is done; refused when too much of it is queued.

    The tenant's turn ends when its work does, not when its caller stops waiting: a
    request past its deadline still holds the worker it runs on, so it still counts.
    """
    gate = _gates.setdefault(tenant, _Gate(asyncio.Lock()))
    if gate.lock.locked() and gate.waiting >= QUEUED_PER_TENANT:
        raise QuotaExhausted(
            f"{gate.waiting} requests of this tenant are already waiting for their turn at the "
            "workers; send the next one when an answer comes back",
            metadata={"quota": "queued_work", "limit": QUEUED_PER_TENANT},
            violations=[FieldViolation("request", "too many requests waiting at once")],
        )
    gate.waiting += 1
    try:
        await gate.lock.acquire()
    except BaseException:  # cancelled while waiting: the turn was never taken
        gate.waiting -= 1
        _forget_if_idle(tenant, gate)
        raise
    gate.waiting -= 1
    try:
        work = asyncio.get_running_loop().run_in_executor(
            _started().executor(), _call, function, args
        )
    except BrokenProcessPool:
        _end_turn(tenant, gate)
        raise _lost() from None
    work.add_done_callback(lambda _: _end_turn(tenant, gate))
    try:
        return await asyncio.shield(work)
    except BrokenProcessPool:
        raise _lost() from None


def _end_turn(tenant: str, gate: _Gate) -> None:
    gate.lock.release()
    _forget_if_idle(tenant, gate)


def _forget_if_idle(tenant: str, gate: _Gate) -> None:
    """Drop a gate nobody holds or waits for: an idle tenant keeps nothing here."""
    if not gate.lock.locked() and gate.waiting == 0 and _gates.get(tenant) is gate:
        del _gates[tenant]


def _lost() -> WorkTimeout:
    """A worker died (killed, out of memory): the pool is replaced and the request refused."""
    global _pools
    with _lock:
        broken, _pools = _pools, None
    if broken is not None:
        broken.shutdown(wait=False)
    return WorkTimeout("the request's work stopped before it finished; send it again")


def _tenant() -> str:
    try:
        return current_tenant()
    except Unauthenticated:
        return ""


# --- in the worker -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Raised:
    """A `WfeError` raised in a worker, as plain data: its class and what it carries."""

    kind: type[WfeError]
    message: str
    metadata: Mapping[str, str]
    violations: tuple[FieldViolation, ...]

    def error(self) -> WfeError:
        error = self.kind.__new__(self.kind)
        WfeError.__init__(error, self.message, metadata=self.metadata, violations=self.violations)
        return error


def _call(function: Callable[..., T], args: tuple[object, ...]) -> T | _Raised:
    try:
        return function(*args)
    except WfeError as error:
        return _Raised(type(error), error.message, error.metadata, error.violations)


def _prepare_worker(modules: tuple[str, ...]) -> None:
    os.nice(WORKER_NICENESS)
    for name in modules:
        importlib.import_module(name)
