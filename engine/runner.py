"""Running one step of a type: what it outputs and which step follows."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from engine import callbacks
from engine.aggregation import aggregate
from engine.graph import Graph, choose_branch, resolve_values
from engine.progress import iso
from engine.steptypes import MINIMUM_TIER, STEP_TYPES
from engine.tools import (
    StepFailure,
    ToolCall,
    ToolCatalog,
    ToolMode,
    ToolRegistry,
    ToolSpec,
    installed,
)
from foundation.orm import utcnow
from tiers import StepTypeAccess, TenantPlan

FIXTURE: Final = "$fixture"
"""Set on a step of a test run's copy of its definition (`engine.traces`): the output to
record in place of calling the step's tool. No definition a tenant saves can hold it."""

INLINE_TYPES = frozenset({"input", "output", "condition", "aggregate", "wait", "loop", "parallel"})
STATIC_INLINE_TYPES = frozenset({"input"})
"""Inline types whose next step is fixed by the definition (a condition's is not)."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """A webhook step waits for its callback (`engine.webhooks`) before it completes."""

    token: str
    digest: str
    event: str
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """A step's result: its output and the step that follows (None ends the path).

    `waiting`: the step is not done yet, its callback completes it.
    """

    output: Any
    next_step: str | None
    waiting: Waiting | None = None


def runs_inline(step: Mapping[str, Any], tools: ToolRegistry) -> bool:
    """Whether the step has no effect outside the execution (its tool declares itself inline).

    Such steps run inside the transaction that records them: one commit per step,
    and nothing to repeat if a worker dies.
    """
    kind = step.get("type")
    if kind in INLINE_TYPES or FIXTURE in step:
        return True
    if kind == "webhook":
        return not (step.get("config") or {}).get("request")
    if kind in ("tool", "custom"):
        name = _tool_name(step)
        return name in tools and tools.get(name).spec.mode is ToolMode.INLINE
    return False


def _tool_name(step: Mapping[str, Any]) -> str:
    """The tool a `tool` step calls, or the adapter a `custom` step does."""
    config = step.get("config") or {}
    return str(config.get("adapter" if step.get("type") == "custom" else "tool", ""))


def _declared(step: Mapping[str, Any], catalog: ToolCatalog | None) -> ToolSpec | None:
    """The spec of the installed tool (or adapter) a step names (None: none, or unknown)."""
    if step.get("type") not in ("tool", "custom"):
        return None
    return (catalog or installed()).spec(_tool_name(step))


def awaits_io(step: Mapping[str, Any], catalog: ToolCatalog | None = None) -> bool:
    """Whether the step is a dispatched tool's that waits rather than computes (not declared
    `cpu_bound`): its task goes to the workers' I/O lane, many in flight per process."""
    if FIXTURE in step:
        return False
    if step.get("type") == "webhook":
        return bool((step.get("config") or {}).get("request"))
    spec = _declared(step, catalog)
    return spec is not None and spec.mode is ToolMode.DISPATCHED and not spec.cpu_bound


def plan_bound(step: Mapping[str, Any]) -> bool:
    """Whether running the step depends on the tenant's plan as it is now (`check_tier`):
    every type above the basic ones (an unknown one too)."""
    step_type = STEP_TYPES.get(str(step.get("type", "")))
    return step_type is None or step_type.access > StepTypeAccess.BASIC


def check_tier(step: Mapping[str, Any], plan: TenantPlan) -> None:
    """Refuse to run a step whose type the tenant's plan no longer has (it was downgraded
    after the execution started): the step fails with `tier_restriction`."""
    step_type = STEP_TYPES.get(str(step.get("type", "")))
    if step_type is None:
        return
    if step_type.name == "webhook" and not plan.limits.webhooks:
        raise StepFailure(
            "tier_restriction", f"webhooks are not in the {plan.tier} plan", retryable=False
        )
    if step_type.name == "custom" and _tool_name(step) not in plan.limits.adapters:
        raise StepFailure(
            "tier_restriction",
            f"the adapter {_tool_name(step)!r} is not enabled for this tenant",
            retryable=False,
        )
    if step_type.access > plan.limits.step_types:
        raise StepFailure(
            "tier_restriction",
            f"{step_type.name} steps need the {MINIMUM_TIER[step_type.access]} tier; "
            f"the tenant is on {plan.tier}",
            retryable=False,
        )


AHEAD_STEPS = 8
"""Inline steps at most that a worker runs ahead of the first dispatched step (see
`engine.engine`), and that `first_dispatched` follows."""


def first_dispatched(
    graph: Graph, step_id: str, catalog: ToolCatalog | None = None
) -> Mapping[str, Any] | None:
    """The dispatched step the inline steps from `step_id` lead to, when no branch decides
    it (None: a condition, the end, a loop or more than `AHEAD_STEPS` steps on the way)."""
    seen: set[str] = set()
    current: str | None = step_id
    while current is not None and current not in seen and len(seen) <= AHEAD_STEPS:
        step = graph.step(current)
        if step.get("type") == "tool":
            spec = _declared(step, catalog)
            if spec is None or spec.mode is not ToolMode.INLINE:
                return step
        elif step.get("type") not in STATIC_INLINE_TYPES:
            return None
        seen.add(current)
        current = graph.next_of(current)
    return None


async def run_step(
    step: Mapping[str, Any],
    context: Mapping[str, Any],
    call: ToolCall,
    tools: ToolRegistry,
) -> Outcome:
    """Run `step` against `context` (input and earlier outputs); raise StepFailure on failure."""
    kind = step.get("type")
    config = step.get("config") or {}
    following = str(step["next"]) if step.get("next") else None
    trace = call.trace
    if FIXTURE in step:  # a test run's answer in place of the call: no side effect
        if trace is not None:
            trace["fixture"] = True
        return Outcome(step[FIXTURE], following)
    if kind == "input":
        return Outcome(context.get("input"), following)
    if kind == "output":
        values = resolve_values(config.get("values") or {}, context)
        return Outcome(values, None)
    if kind == "condition":
        seen: list[Any] | None = None
        if trace is not None:
            seen = trace.setdefault("conditions", [])
        chosen, index = choose_branch(step, context, seen)
        if chosen is None:
            raise StepFailure(
                "no_branch", "no condition holds and the step has no default", retryable=False
            )
        return Outcome({"branch": index if index >= 0 else "default", "next": chosen}, chosen)
    if kind == "aggregate":
        return Outcome(aggregate(config, context), following)
    if kind == "wait":
        waited = wait_target(step, context)
        return Outcome({"resumed_at": iso(utcnow()), "until": iso(waited)}, following)
    if kind == "webhook":
        return await _webhook(step, context, call, tools)
    if kind in ("tool", "custom"):
        tool = tools.get(_tool_name(step))
        if (kind == "custom") != tool.spec.adapter:
            raise StepFailure(
                "unknown_tool",
                f"{tool.spec.name!r} is {'not ' if kind == 'custom' else ''}a custom adapter",
                retryable=False,
            )
        arguments = resolve_values(config.get("arguments") or {}, context)
        if trace is not None:
            trace["input"] = arguments
        return Outcome(await tool.run(replace(call, arguments=arguments)), following)
    raise StepFailure(
        "unsupported_step_type",
        f"steps of type {kind!r} cannot run yet in this engine",
        retryable=False,
    )


WEBHOOK_TOOL = "http_request"
DEFAULT_WEBHOOK_TIMEOUT = 24 * 60 * 60.0


async def _webhook(
    step: Mapping[str, Any], context: Mapping[str, Any], call: ToolCall, tools: ToolRegistry
) -> Outcome:
    """Issue the step's callback token, make its outbound call (which may carry the token as
    `$.<step>.token`) and wait for the callback, unless `wait` is false."""
    config = step.get("config") or {}
    following = str(step["next"]) if step.get("next") else None
    token = callbacks.issue(call.execution_id, call.step_id, call.attempt)
    event = str(config.get("event", ""))
    response = None
    if config.get("request"):
        own = {str(step["id"]): {"token": token.render(), "event": event}}
        arguments = resolve_values(config["request"], ChainMap(own, context))  # type: ignore[arg-type]
        response = await tools.get(WEBHOOK_TOOL).run(replace(call, arguments=arguments))
    if config.get("wait") is False:
        return Outcome({"response": response}, following)
    waiting = Waiting(token.render(), token.digest, event, webhook_timeout(step))
    return Outcome({"response": response}, following, waiting)


def webhook_timeout(step: Mapping[str, Any]) -> float:
    """Seconds a webhook step waits for its callback."""
    config = step.get("config") or {}
    return float(config.get("timeout_seconds") or DEFAULT_WEBHOOK_TIMEOUT)


def wait_target(step: Mapping[str, Any], context: Mapping[str, Any]) -> datetime | None:
    """The moment a `wait` step's `until` path names (None: it waits a number of seconds)."""
    config = step.get("config") or {}
    if "until" not in config:
        return None
    path = str(config["until"])
    value = resolve_values(path, context)
    if not isinstance(value, str):
        raise StepFailure("invalid_wait", f"{path} is not a timestamp", retryable=False)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise StepFailure(
            "invalid_wait", f"{path} is {value[:60]!r}, not an ISO 8601 timestamp", retryable=False
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
