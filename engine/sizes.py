"""How big a JSON value is, measured one way everywhere: its compact UTF-8 JSON encoding.

Plan limits on definitions, inputs and outputs (`max_*_bytes`) compare against this, so a
tenant can predict the number from the document it sends.
"""

from __future__ import annotations

import json

from foundation.errors import FieldViolation, QuotaExhausted
from tiers import TenantPlan


def encoded_size(value: object) -> int:
    """Bytes of `value` as compact JSON (no spaces, UTF-8 unescaped); anything else as text."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def check_input_size(plan: TenantPlan, value: object, field: str, size: int | None = None) -> None:
    """Refuse an execution input over the plan's `max_input_bytes`, before anything reads it.

    A plan limit, not a malformed value (a bigger plan takes the same input): reason
    TIER_RESTRICTION with RESOURCE_EXHAUSTED, as for the plan's other numeric limits.
    `size`: the value's `encoded_size` when the caller measured it already (encoding a
    large input costs milliseconds, better spent off the event loop).
    """
    limit = plan.limits.max_input_bytes
    size = encoded_size(value) if size is None else size
    if size > limit:
        raise QuotaExhausted(
            f"the input is {size} bytes as compact JSON; the {plan.tier} tier allows {limit}",
            metadata={"tier": plan.tier, "quota": "max_input_bytes", "limit": limit, "used": size},
            violations=[FieldViolation(field, f"{size} bytes, more than {limit}")],
        )
