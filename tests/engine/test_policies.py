"""Pure engine rules over large input spaces: backoff, urgency ranks, the steps record."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from engine import progress
from engine.dispatch import MAX_RANK, rank_for, resend_delay
from engine.progress import StepStatus
from engine.retry import DEFAULT_RETRY, RetryPolicy, policy_of
from workers.app import broker_priority

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 100),
    initial_interval=st.floats(0.001, 600),
    backoff_coefficient=st.floats(1, 100),
    max_interval=st.floats(0.001, 86400),
    jitter=st.floats(0, 1),
)


@given(policies, st.integers(1, 99), st.integers(0, 2**32))
def test_backoff_never_exceeds_its_cap_by_more_than_the_jitter(
    policy: RetryPolicy, attempt: int, seed: int
) -> None:
    wait = policy.delay(attempt, random.Random(seed))
    try:
        growth = policy.initial_interval * policy.backoff_coefficient ** (attempt - 1)
    except OverflowError:
        growth = policy.max_interval
    cap = min(growth, policy.max_interval)
    assert 0 <= wait <= cap * (1 + policy.jitter) + 1e-9
    assert wait >= cap * (1 - policy.jitter) - 1e-9


@given(policies, st.integers(1, 5000))
def test_backoff_without_jitter_never_shrinks(policy: RetryPolicy, attempt: int) -> None:
    steady = RetryPolicy(
        policy.max_attempts,
        policy.initial_interval,
        policy.backoff_coefficient,
        policy.max_interval,
        0.0,
    )
    assert steady.delay(attempt + 1) >= steady.delay(attempt)


@given(policies, st.integers(1, 200), st.text(max_size=20), st.booleans())
def test_a_retry_is_allowed_only_within_attempts_and_for_retryable_codes(
    policy: RetryPolicy, attempt: int, code: str, retryable: bool
) -> None:
    allowed = policy.allows_retry(attempt, code, retryable)
    assert allowed == (retryable and attempt < policy.max_attempts)


def test_step_policies_come_from_the_definition() -> None:
    assert policy_of({"on_error": "retry"}) == DEFAULT_RETRY
    assert policy_of({}).max_attempts == 1
    policy = policy_of(
        {"retry": {"max_attempts": 4, "initial_interval": "0.500s", "max_interval": "10s"}}
    )
    assert (policy.max_attempts, policy.initial_interval, policy.max_interval) == (4, 0.5, 10.0)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_busier_tenant_is_never_more_urgent(lighter: int, extra: int) -> None:
    assert 0 <= rank_for(lighter) <= rank_for(lighter + extra) <= MAX_RANK


@given(st.integers(-5, 20))
def test_ranks_map_onto_each_brokers_priority_order(rank: int) -> None:
    redis = broker_priority(rank, "redis://localhost/0")
    amqp = broker_priority(rank, "amqp://guest@localhost//")
    assert 0 <= redis <= MAX_RANK and 0 <= amqp <= MAX_RANK
    assert redis + amqp == MAX_RANK  # Redis serves low numbers first, RabbitMQ high ones


step_ids = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=12, unique=True
)


@given(step_ids, st.data())
def test_the_steps_record_counts_done_steps_and_keeps_the_seed_keys(
    ids: list[str], data: st.DataObject
) -> None:
    record = progress.initial({"steps": [{"id": i, "name": i.upper()} for i in ids]})
    assert record["total_steps"] == len(ids)
    done = data.draw(st.sets(st.sampled_from(ids)))
    for step_id in done:
        record = progress.update(record, step_id, current=True, status=StepStatus.COMPLETED.value)
    assert progress.fraction_done(record) == round(len(done) / len(ids), 4)
    finished = progress.finish(record, StepStatus.SKIPPED)
    assert progress.fraction_done(finished) == 1.0
    for item in finished["step_list"]:
        assert {"name", "status", "started_at", "completed_at", "error"} <= set(item)
    again = progress.reset(finished, set(ids))
    assert progress.fraction_done(again) == 0.0


@given(st.integers(0, 1000))
def test_republishing_waits_longer_each_time_up_to_64_graces(publishes: int) -> None:
    grace = timedelta(seconds=1)
    assert resend_delay(grace, publishes) <= resend_delay(grace, publishes + 1)
    assert grace <= resend_delay(grace, publishes) <= grace * 64
