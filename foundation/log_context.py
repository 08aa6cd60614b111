"""What a log line is about: the tenant, execution and step of the work that wrote it.

Set where work on one step starts (the engine's entry points); read by the JSON log
format. Context variables, so concurrent steps on one event loop never mix them up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkingOn:
    tenant: str
    execution_id: str | None = None
    step_id: str | None = None


_working_on: ContextVar[WorkingOn | None] = ContextVar("wfe_working_on", default=None)


@contextmanager
def working_on(
    tenant: str, execution_id: str | None = None, step_id: str | None = None
) -> Iterator[None]:
    """Log lines written inside the block name this tenant, execution and step."""
    token = _working_on.set(WorkingOn(tenant, execution_id, step_id))
    try:
        yield
    finally:
        _working_on.reset(token)


def current_work() -> WorkingOn | None:
    return _working_on.get()
