"""A step's retry policy and the wait before each retry."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.durations import seconds

LONGEST_DELAY_SECONDS: Final = 24 * 60 * 60.0
"""No wait between attempts is longer, whatever a stored row says: validation refuses longer
intervals today, and rows stored before must not overflow a datetime and strand the step."""
MOST_ATTEMPTS: Final = 100


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
        except (OverflowError, ZeroDivisionError):
            growth = self.max_interval
        base = _clamp(min(growth, self.max_interval), 0.0, LONGEST_DELAY_SECONDS)
        jitter = _clamp(self.jitter, 0.0, 1.0)
        if jitter <= 0:
            return base
        spread = base * jitter
        return _clamp(base + (rand or random).uniform(-spread, spread), 0.0, LONGEST_DELAY_SECONDS)

    def allows_retry(self, attempt: int, code: str, retryable: bool) -> bool:
        """Whether a failure with `code` on attempt `attempt` is tried again."""
        most = min(self.max_attempts, MOST_ATTEMPTS)
        return retryable and code not in self.non_retryable_codes and attempt < most


def _clamp(value: float, low: float, high: float) -> float:
    """`value` within [low, high]; NaN (from a stored inf * 0, say) counts as `low`."""
    return low if math.isnan(value) else min(max(value, low), high)


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
