"""`webhook` steps: an optional outbound call, then a wait for a callback that completes it.

The step issues a callback token bound to its execution, its step instance and its attempt;
the outbound call (through the guarded `http_request` tool) can carry it as
`$.<step>.token`, and the execution's `steps` record shows it while the step waits. Only a
digest of the token's secret is stored. `CompleteWebhook` with the token records the
payload as the step's output, once: the attempt is then no longer waiting, so the same
token is refused afterwards. A wait holds no worker: the attempt's dispatch row fires at the
timeout (a durable timer, like `wait`), and a step still waiting then fails with
`webhook_timeout`, which its retry and error policies handle like any failure.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from engine import attempts as attempt_rows
from engine import executions as execution_rows
from engine import transitions
from engine.callbacks import read
from engine.graph import Graph
from engine.instances import base
from engine.rows import ExecutionRow
from engine.runner import Outcome, webhook_timeout
from engine.sizes import encoded_size
from engine.tools import StepFailure
from engine.units import Unit
from foundation.errors import (
    ExecutionNotFound,
    ExecutionStateConflict,
    FieldViolation,
    InvalidInput,
)
from persistence.models import AttemptStatus


def waiting_of(output: Any) -> dict[str, Any] | None:
    """The callback an attempt's output says it waits for, if it does."""
    if isinstance(output, dict) and isinstance(output.get("callback"), dict):
        return output["callback"]  # type: ignore[no-any-return]
    return None


def expired(output: Any, now: datetime) -> bool:
    waiting = waiting_of(output)
    return waiting is not None and now >= datetime.fromisoformat(waiting["expires_at"])


def timed_out(step: Any) -> StepFailure:
    return StepFailure(
        "webhook_timeout",
        "no callback came before the webhook's timeout",
        details=f"Timeout after {int(webhook_timeout(step) * 1000)}ms",
    )


async def complete(unit: Unit, token: str, payload: dict[str, Any]) -> ExecutionRow:
    """Record `payload` as the output of the step `token` names, if it still waits."""
    parts = read(token)
    execution = await execution_rows.get(unit.session, parts.execution_id, for_update=True)
    if execution is None:
        raise ExecutionNotFound(
            f"no execution {parts.execution_id!r}", metadata={"execution_id": parts.execution_id}
        )
    attempt = await attempt_rows.get(unit.session, execution.id, parts.instance, parts.attempt)
    waiting = waiting_of(attempt.output) if attempt is not None else None
    if (
        attempt is None
        or waiting is None
        or not hmac.compare_digest(str(waiting.get("digest", "")), parts.digest)
    ):
        if attempt is not None and attempt.status != AttemptStatus.RUNNING:
            raise _not_waiting(execution.id, parts.instance, "was completed or expired already")
        raise ExecutionNotFound(
            "no webhook step waits for this token", metadata={"execution_id": execution.id}
        )
    if attempt.status != AttemptStatus.RUNNING or execution.status in transitions.TERMINAL:
        raise _not_waiting(execution.id, parts.instance, "was completed or expired already")
    if expired(attempt.output, unit.now):
        raise _not_waiting(execution.id, parts.instance, "timed out")
    size, limit = encoded_size(payload), unit.plan.limits.max_output_bytes
    if size > limit:
        raise InvalidInput(
            f"the payload is {size} bytes as compact JSON; the plan allows {limit} per step",
            violations=[FieldViolation("payload", f"at most {limit} bytes")],
        )
    tracked = unit.track(execution)
    row = unit.track_attempt(attempt)
    await transitions.settle(unit, tracked, row)
    unit.undispatched.add((execution.id, row.step_id, row.attempt))
    following = Graph.of(tracked.definition).next_of(row.step_id)
    transitions.set_step(unit, tracked, row.step_id, callback=None)
    await transitions.succeed(unit, tracked, row, Outcome(payload, following))
    return tracked


def _not_waiting(execution_id: str, instance: str, why: str) -> ExecutionStateConflict:
    return ExecutionStateConflict(
        f"the webhook step {base(instance)!r} {why}: a callback token is used once",
        metadata={"execution_id": execution_id, "step_id": base(instance)},
    )
