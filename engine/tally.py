"""What a transaction did, counted for the metrics once it has committed.

Transitions note their facts here as they happen (a step ended, an execution finished);
`emit` turns them into samples only after the commit, so a rolled-back transaction or a
refused start counts nothing and a retried one counts once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from foundation.metrics import metrics, tenant_label
from tiers import TenantPlan


@dataclass(slots=True)
class Tally:
    started: int = 0
    finished: list[str] = field(default_factory=list)
    steps: list[tuple[str, str, float]] = field(default_factory=list)
    """(step type, outcome, seconds) of each attempt that ended."""
    lags: list[float] = field(default_factory=list)
    takeovers: int = 0

    def step_ended(
        self, step_type: str, outcome: str, started: datetime | None, ended: datetime
    ) -> None:
        seconds = (ended - started).total_seconds() if started is not None else 0.0
        self.steps.append((step_type, outcome, max(seconds, 0.0)))

    def step_started(self, due: datetime | None, started: datetime) -> None:
        if due is not None:
            self.lags.append(max((started - due).total_seconds(), 0.0))

    def emit(self, plan: TenantPlan) -> None:
        """Record the tally against `plan`'s tier, then forget it."""
        if not (self.started or self.finished or self.steps or self.lags or self.takeovers):
            return
        families = metrics()
        tier = {"tier": plan.tier.value}
        labels = tenant_label(tier, plan.tenant_id)
        if self.started:
            families.executions_started.labels(**labels).inc(self.started)
        for status in self.finished:
            families.executions_finished.labels(**labels, status=status).inc()
        for step_type, outcome, seconds in self.steps:
            families.step_duration.labels(**labels, step_type=step_type, outcome=outcome).observe(
                seconds
            )
        for lag in self.lags:
            families.dispatch_lag.labels(**labels).observe(lag)
        if self.takeovers:
            families.lease_takeovers.inc(self.takeovers)
        self.started, self.takeovers = 0, 0
        self.finished.clear()
        self.steps.clear()
        self.lags.clear()
