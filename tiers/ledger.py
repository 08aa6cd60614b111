"""Quota counters taken by a batch of calls in one transaction: locked once, written once.

Concurrent starts of a tenant share a transaction (group commit). Taking each start's
quota with its own upsert would cost every start a round trip per counter, each waiting
on the row lock the previous one took. The ledger locks and reads the batch's counters in
one statement, takes each call's amounts in memory (refusing past the limit exactly as
`consume` does, with the same error), and adds the totals in one statement before the
commit. A call that fails gives its amounts back (`mark` and `restore`), as rolling back
its savepoint gives back its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tiers import repository
from tiers.policy import TenantPlan
from tiers.quotas import Allowance, Quota, exhausted, window_of


@dataclass(slots=True)
class _Counter:
    base: int
    taken: int = 0


class CounterLedger:
    """The batch's view of some of the tenant's counters, held locked until it commits."""

    def __init__(self, session: AsyncSession, plan: TenantPlan, now: datetime) -> None:
        self._session = session
        self._plan = plan
        self._now = now
        self._counters: dict[tuple[str, str], _Counter] = {}

    async def lock(self, quotas: Sequence[Quota]) -> None:
        """Lock and read these counters (a missing one is made at zero), in one statement."""
        keys = [(quota.metric, window_of(quota, self._now)[0]) for quota in quotas]
        found = await repository.lock_many(self._session, self._plan.tenant_id, keys)
        for key in keys:
            self._counters[key] = _Counter(found[key])

    def consume(self, quota: Quota, amount: int = 1) -> Allowance:
        """Take `amount` of a locked counter, or raise QuotaExhausted as `consume` does."""
        window, resets_at = window_of(quota, self._now)
        counter = self._counters[(quota.metric, window)]
        limit: int | None = getattr(self._plan.limits, quota.limit_name)
        used = counter.base + counter.taken + amount
        if limit is not None and used > limit:
            raise exhausted(
                self._plan, quota, limit, counter.base + counter.taken, amount, resets_at
            )
        counter.taken += amount
        return Allowance(quota, self._plan.tier, limit, used, resets_at)

    def mark(self) -> dict[tuple[str, str], int]:
        """What is taken so far, for `restore` when the next call fails."""
        return {key: counter.taken for key, counter in self._counters.items()}

    def restore(self, mark: dict[tuple[str, str], int]) -> None:
        for key, counter in self._counters.items():
            counter.taken = mark.get(key, 0)

    async def flush(self) -> None:
        """Add what the batch took to the counters (still locked), before the commit."""
        for (metric, window), counter in self._counters.items():
            if counter.taken:
                await repository.add(
                    self._session, self._plan.tenant_id, metric, window, counter.taken
                )
                counter.base, counter.taken = counter.base + counter.taken, 0
