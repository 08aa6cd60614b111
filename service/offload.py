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
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from foundation.errors import WorkTimeout

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_workers = 2
_timeout = 5.0
_pool: ThreadPoolExecutor | None = None


def configure(workers: int, timeout_seconds: float) -> None:
    """Size the pool and set the deadline (from `WFE_VALIDATION_*`); a new size takes a new pool."""
    global _workers, _timeout, _pool
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
    future = asyncio.get_running_loop().run_in_executor(_executor(), call)
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        if not future.cancelled():
            raise
        raise WorkTimeout(
            f"the request's work took longer than {timeout:g}s; send a smaller definition",
            metadata={"timeout_seconds": timeout},
        ) from None
