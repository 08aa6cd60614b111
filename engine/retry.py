"""A step's retry policy and the wait before each retry."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.durations import seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how far apart a failing step is tried (attempts include the first)."""

    max_attempts: int = 1
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float = 60.0
    jitter: float = 0.0
    non_retryable_codes: frozenset[str] = frozenset()

    def delay(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based) before the next.

        Exponential from `initial_interval`, capped at `max_interval`, then spread by
        up to ±`jitter` of itself (never below zero), as Temporal and Celery do.
        """
        try:
            growth = self.initial_interval * self.backoff_coefficient ** max(attempt - 1, 0)
        except OverflowError:
            growth = self.max_interval
        base = min(growth, self.max_interval)
        if self.jitter <= 0:
            return base
        spread = base * self.jitter
        return max(base + (rand or random).uniform(-spread, spread), 0.0)

    def allows_retry(self, attempt: int, code: str, retryable: bool) -> bool:
        """Whether a failure with `code` on attempt `attempt` is tried again."""
        return retryable and code not in self.non_retryable_codes and attempt < self.max_attempts


DEFAULT_RETRY = RetryPolicy(
    max_attempts=3, initial_interval=1.0, backoff_coefficient=2.0, max_interval=60.0, jitter=0.2
)
"""What `on_error: retry` without a `retry` block means."""


def policy_of(step: Mapping[str, Any]) -> RetryPolicy:
    """The step's policy: its `retry` block, the default for `on_error: retry`, else one attempt."""
    retry = step.get("retry")
    if not retry:
        return DEFAULT_RETRY if step.get("on_error") == "retry" else RetryPolicy()
    initial = seconds(retry.get("initial_interval")) or 1.0
    return RetryPolicy(
        max_attempts=int(retry.get("max_attempts") or 1),
        initial_interval=initial,
        backoff_coefficient=float(retry.get("backoff_coefficient") or 2.0),
        max_interval=seconds(retry.get("max_interval")) or max(initial, 60.0),
        jitter=float(retry.get("jitter") or 0.0),
        non_retryable_codes=frozenset(retry.get("non_retryable_codes") or ()),
    )
