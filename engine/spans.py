"""The span of one step attempt, under the trace of the call that started its execution."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from foundation import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span


def attempt_span(
    trace_parent: str | None,
    tenant_id: str,
    execution_id: str,
    step_id: str,
    attempt: int,
    step: Mapping[str, Any],
) -> AbstractContextManager[Span | None]:
    """`step <type>` with the attempt's ids; nothing with traces off or no stored parent
    (an execution started while they were off)."""
    if trace_parent is None or not tracing.enabled():
        return nullcontext()
    kind = str(step.get("type"))
    return tracing.span(
        f"step {kind}",
        parent=trace_parent,
        attributes={
            "wfe.tenant_id": tenant_id,
            "wfe.execution_id": execution_id,
            "wfe.step_id": step_id,
            "wfe.step_type": kind,
            "wfe.attempt": attempt,
        },
    )
