"""Work off the event loop: in worker processes, one turn per tenant, under a deadline."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from multiprocessing.managers import SyncManager

import pytest

from foundation.errors import FieldViolation, InvalidWorkflowDefinition, QuotaExhausted, WorkTimeout
from service import offload
from tenancy import CallIdentity, TenantId
from tenancy.context import bind_identity


def refuse(field: str) -> None:
    raise InvalidWorkflowDefinition(
        f"{field} is wrong", metadata={"field": field}, violations=[FieldViolation(field, "bad")]
    )


def wait_for(release: object, started: object) -> int:
    started.set()  # type: ignore[attr-defined]
    release.wait(30)  # type: ignore[attr-defined]
    return os.getpid()


@contextmanager
def acting_as(tenant: str) -> Iterator[None]:
    with bind_identity(CallIdentity(TenantId(tenant), "user-1", frozenset())):
        yield


@pytest.fixture
async def manager() -> AsyncIterator[SyncManager]:
    with multiprocessing.get_context("spawn").Manager() as shared:
        yield shared


@pytest.fixture
def one_worker() -> Iterator[None]:
    offload.configure(1, 5.0)
    yield
    offload.shutdown()
    offload.configure(2, 5.0)


@pytest.fixture
def two_workers_short_deadline() -> Iterator[None]:
    offload.configure(2, 0.3)
    yield
    offload.configure(2, 5.0)


async def test_work_runs_on_a_thread_until_a_worker_is_ready_then_in_another_process() -> None:
    offload.shutdown()
    ready = offload.start()
    if not ready.is_set():
        assert await offload.run(os.getpid) == os.getpid()
    assert await asyncio.to_thread(ready.wait, 60)
    assert await offload.run(os.getpid) != os.getpid()
    assert await offload.run(sum, [1, 2, 3]) == 6


async def test_an_error_raised_in_a_worker_reaches_the_caller_whole() -> None:
    with pytest.raises(InvalidWorkflowDefinition) as refused:
        await offload.run(refuse, "steps")
    assert refused.value.message == "steps is wrong"
    assert refused.value.metadata == {"field": "steps"}
    assert refused.value.violations == (FieldViolation("steps", "bad"),)
    assert refused.value.code.name == "INVALID_ARGUMENT"


async def test_small_work_runs_inline_and_large_work_in_a_worker() -> None:
    assert await asyncio.to_thread(offload.start().wait, 60)
    assert await offload.run_sized(10, os.getpid) == os.getpid()
    assert await offload.run_sized(offload.INLINE_BYTES + 1, os.getpid) != os.getpid()


async def test_work_past_its_deadline_is_a_timeout_and_the_loop_stays_free(
    manager: SyncManager, one_worker: None
) -> None:
    release, started = manager.Event(), manager.Event()
    offload.configure(1, 0.5)
    with acting_as("t-slow"):
        waiting = asyncio.create_task(offload.run(wait_for, release, started))
    await asyncio.to_thread(started.wait, 30)
    # The loop serves others meanwhile: a timer fires while the worker is busy.
    assert await asyncio.wait_for(asyncio.sleep(0, "answered"), 1.0) == "answered"
    with pytest.raises(WorkTimeout) as timed_out:
        await waiting
    assert timed_out.value.code.name == "DEADLINE_EXCEEDED"
    assert timed_out.value.reason == "TIMEOUT"
    release.set()


async def test_a_tenant_holds_one_worker_and_queues_a_few_requests_then_is_refused(
    manager: SyncManager,
) -> None:
    assert await asyncio.to_thread(offload.start().wait, 60)
    release, started = manager.Event(), manager.Event()
    with acting_as("t-flood"):
        running = asyncio.create_task(offload.run(wait_for, release, started))
        await asyncio.to_thread(started.wait, 30)
        queued = [
            asyncio.create_task(offload.run(sum, [1])) for _ in range(offload.QUEUED_PER_TENANT)
        ]
        await asyncio.sleep(0)  # every queued call has taken its place in the line
        with pytest.raises(QuotaExhausted) as refused:
            await offload.run(sum, [1])
    assert refused.value.code.name == "RESOURCE_EXHAUSTED"
    with acting_as("t-other"):  # another tenant is served by the pool's other worker
        assert await offload.run(sum, [2, 3]) == 5
    assert not any(task.done() for task in queued)  # the flood waits for its own turn
    release.set()
    assert await running != os.getpid()
    assert await asyncio.gather(*queued) == [1] * offload.QUEUED_PER_TENANT


async def test_a_tenants_turn_lasts_until_its_work_ends_even_past_the_deadline(
    manager: SyncManager, two_workers_short_deadline: None
) -> None:
    release, started = manager.Event(), manager.Event()
    with acting_as("t-slow"):
        with pytest.raises(WorkTimeout):
            await offload.run(wait_for, release, started)
        following = asyncio.create_task(offload.run(sum, [4]))
    # The pool's other worker is free, yet the tenant's next request waits for its turn.
    with acting_as("t-other"):
        assert await offload.run(sum, [5]) == 5
    done, _ = await asyncio.wait({following}, timeout=0.2)
    assert not done
    release.set()
    assert await following == 4


async def test_a_call_cancelled_while_waiting_for_its_turn_leaves_nothing_behind(
    manager: SyncManager,
) -> None:
    release, started = manager.Event(), manager.Event()
    with acting_as("t-impatient"):
        running = asyncio.create_task(offload.run(wait_for, release, started))
        await asyncio.to_thread(started.wait, 30)
        waiting = asyncio.create_task(offload.run(sum, [1]))
        await asyncio.sleep(0)  # it has taken its place in the line
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await running
    assert "t-impatient" not in offload._gates  # an idle tenant keeps no gate
