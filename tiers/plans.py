"""The tier table, as data: what each plan includes and how much of it.

A numeric limit of None means unlimited. Ordered levels (`StepTypeAccess`,
`Versioning`, ...) compare by rank, so "at least advanced" is `level >= ADVANCED`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import IntEnum, StrEnum
from typing import Any, Final

KIB: Final = 1024
MIB: Final = 1024 * KIB
MAX_STEPS_CEILING: Final = 2000
"""Steps in one workflow on any plan, even an "unlimited" one: validation and the engine's
graph walks stay well under a second at this size."""


class Tier(StrEnum):
    FREE = "free"
    PROFESSIONAL = "professional"
    ENTERPRISE = "enterprise"


class StepTypeAccess(IntEnum):
    BASIC = 1
    ADVANCED = 2
    ALL_AND_CUSTOM = 3


class Versioning(IntEnum):
    NONE = 1
    BASIC = 2
    FULL = 3


class TemplateAccess(IntEnum):
    BASIC = 1
    STANDARD = 2
    ALL_AND_CUSTOM = 3


class LogDetail(IntEnum):
    NONE = 1
    STANDARD = 2
    EXTENDED = 3


class Monitoring(IntEnum):
    LIMITED = 1
    FULL = 2
    ADVANCED = 3


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """What one plan allows; field names are the limit names used in errors and overrides."""

    max_workflows: int | None
    max_steps_per_workflow: int | None
    max_concurrent_executions: int | None
    max_executions_per_day: int | None
    history_retention_days: int
    max_execution_seconds: int | None
    max_templates: int | None
    max_custom_templates: int | None
    step_types: StepTypeAccess
    versioning: Versioning
    templates: TemplateAccess
    log_detail: LogDetail
    monitoring: Monitoring
    webhooks: bool
    max_definition_bytes: int
    max_input_bytes: int
    max_output_bytes: int
    max_subscriptions: int
    """Live streams (Subscribe, WatchExecution) the tenant may hold open on one server."""
    max_loop_iterations: int
    """Iterations one loop step may run (0: the plan has no loops)."""
    adapters: frozenset[str] = frozenset()
    """The custom adapters enabled for the tenant (Enterprise; `wfe tenant set-adapters`)."""

    @property
    def steps_allowed(self) -> int:
        """The step limit validation applies: the plan's, never above `MAX_STEPS_CEILING`."""
        limit = self.max_steps_per_workflow
        return MAX_STEPS_CEILING if limit is None else min(limit, MAX_STEPS_CEILING)

    def with_overrides(self, overrides: dict[str, Any]) -> PlanLimits:
        """A copy with `overrides` applied; unknown names or bad values raise ValueError."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in OVERRIDABLE:
                raise ValueError(f"limit {name!r} cannot be overridden")
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"limit {name!r} must be a whole number or null (unlimited)")
            if value is not None and value < 1:
                raise ValueError(f"limit {name!r} must be at least 1")
            if name == "max_steps_per_workflow" and value is not None and value > MAX_STEPS_CEILING:
                raise ValueError(f"max_steps_per_workflow is at most {MAX_STEPS_CEILING}")
            if name in BOUNDED and value is None:
                raise ValueError(f"{name} cannot be unlimited")
            changes[known[name].name] = value
        return replace(self, **changes)


OVERRIDABLE: Final = frozenset(
    {
        "max_workflows",
        "max_steps_per_workflow",
        "max_concurrent_executions",
        "max_executions_per_day",
        "history_retention_days",
        "max_execution_seconds",
        "max_templates",
        "max_custom_templates",
        "max_subscriptions",
        "max_loop_iterations",
    }
)
"""Limits an Enterprise contract may set per tenant ("configurable" in the tier table)."""

BOUNDED: Final = frozenset({"history_retention_days", "max_subscriptions", "max_loop_iterations"})
"""Overridable limits that always keep a number: every stream holds server memory."""

PLANS: Final[dict[Tier, PlanLimits]] = {
    Tier.FREE: PlanLimits(
        max_workflows=5,
        max_steps_per_workflow=10,
        max_concurrent_executions=2,
        max_executions_per_day=100,
        history_retention_days=7,
        max_execution_seconds=5 * 60,
        max_templates=5,
        max_custom_templates=0,
        step_types=StepTypeAccess.BASIC,
        versioning=Versioning.NONE,
        templates=TemplateAccess.BASIC,
        log_detail=LogDetail.NONE,
        monitoring=Monitoring.LIMITED,
        webhooks=False,
        max_definition_bytes=64 * KIB,
        max_input_bytes=64 * KIB,
        max_output_bytes=256 * KIB,
        max_subscriptions=3,
        max_loop_iterations=0,
    ),
    Tier.PROFESSIONAL: PlanLimits(
        max_workflows=50,
        max_steps_per_workflow=30,
        max_concurrent_executions=10,
        max_executions_per_day=1000,
        history_retention_days=30,
        max_execution_seconds=30 * 60,
        max_templates=None,
        max_custom_templates=0,
        step_types=StepTypeAccess.ADVANCED,
        versioning=Versioning.BASIC,
        templates=TemplateAccess.STANDARD,
        log_detail=LogDetail.STANDARD,
        monitoring=Monitoring.FULL,
        webhooks=True,
        max_definition_bytes=256 * KIB,
        max_input_bytes=256 * KIB,
        max_output_bytes=1 * MIB,
        max_subscriptions=25,
        max_loop_iterations=1000,
    ),
    # "Configurable" limits get these defaults until the contract overrides them.
    Tier.ENTERPRISE: PlanLimits(
        max_workflows=None,
        max_steps_per_workflow=None,
        max_concurrent_executions=50,
        max_executions_per_day=None,
        history_retention_days=365,
        max_execution_seconds=24 * 60 * 60,
        max_templates=None,
        # A tenant's own templates are rows it keeps: bounded like its workflows.
        max_custom_templates=100,
        step_types=StepTypeAccess.ALL_AND_CUSTOM,
        versioning=Versioning.FULL,
        templates=TemplateAccess.ALL_AND_CUSTOM,
        log_detail=LogDetail.EXTENDED,
        monitoring=Monitoring.ADVANCED,
        webhooks=True,
        # All three stay under the 4 MiB gRPC message, with room for the rest of an answer.
        max_definition_bytes=1 * MIB,
        max_input_bytes=1 * MIB,
        max_output_bytes=2 * MIB,
        max_subscriptions=200,
        max_loop_iterations=10_000,
    ),
}
