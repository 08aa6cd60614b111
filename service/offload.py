"""CPU-heavy work of one request, off the event loop that serves every tenant.

A small pool of threads runs it, so one tenant's large definition delays at most that many
validations, never health checks or other tenants' calls; a deadline bounds how long a call
waits for its answer. A thread cannot be stopped, so the work must be bounded on its own too
(validation stops at the plan's limits); the deadline only bounds the caller's wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, ParamSpec, TypeVar

from foundation.errors import Unauthenticated, WorkTimeout
from tenancy import current_tenant

P = ParamSpec("P")
T = TypeVar("T")

INLINE_BYTES: Final = 64 * 1024
"""Work on a request up to this size runs inline: a thread hop would cost more than it."""

_lock = threading.Lock()
_workers = 2
_timeout = 5.0
_pool: ThreadPoolExecutor | None = None
_gates: dict[str, asyncio.Lock] = {}


SWITCH_INTERVAL_SECONDS: Final = 0.0005
"""How long a pool thread may hold the GIL while the event loop waits for it (Python's
default is 5 ms): the loop needs it many times per call, so a short slice keeps other
tenants' calls fast while a large request is worked on."""


def configure(workers: int, timeout_seconds: float) -> None:
    """Size the pool and set the deadline (from `WFE_VALIDATION_*`); a new size takes a new pool."""
    global _workers, _timeout, _pool
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    with _lock:
        if _pool is not None and workers != _workers:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
        _workers, _timeout = workers, timeout_seconds


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_workers, thread_name_prefix="wfe-offload")
        return _pool


async def run(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in the pool, in this call's context; WorkTimeout past the
    deadline (the call's answer then says DEADLINE_EXCEEDED, and nothing was stored)."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    timeout = _timeout
    try:
        return await asyncio.wait_for(_one_per_tenant(call), timeout)
    except TimeoutError:
        raise WorkTimeout(
            f"the request's work took longer than {timeout:g}s; send a smaller definition",
            metadata={"timeout_seconds": timeout},
        ) from None


async def _one_per_tenant(call: Callable[[], T]) -> T:
    """Run `call` in the pool once the caller's tenant has no other work there.

    A tenant that sends many large requests at once queues behind itself: it holds at
    most one thread, so the others' work (and the event loop's share of the GIL) stays.
    """
    gate = _gates.setdefault(_tenant(), asyncio.Lock())
    async with gate:
        return await asyncio.get_running_loop().run_in_executor(_executor(), call)


def _tenant() -> str:
    try:
        return current_tenant()
    except Unauthenticated:
        return ""


async def run_sized(size: int, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function` on a request of `size` bytes: inline when small, else in the pool."""
    if size <= INLINE_BYTES:
        return function(*args, **kwargs)
    return await run(function, *args, **kwargs)
