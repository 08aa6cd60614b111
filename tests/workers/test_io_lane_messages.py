"""The I/O lane reads Celery's step messages itself: what it makes of any body or header.

A message it cannot read as a `steps.run` task is dropped (acknowledged, never retried in a
loop), and a countdown it cannot read means "now": the step's own checks decide the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.engine import AttemptKey
from tenancy import TenantId
from workers.app import STEP_TASK
from workers.io_lane import _key_of, _seconds_until

STEP = {"task": STEP_TASK, "id": "task-1"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)


def test_a_step_message_names_its_attempt() -> None:
    body = [["acme", "exec-1", "call", 2], {}, {}]
    assert _key_of(body, STEP) == AttemptKey(TenantId("acme"), "exec-1", "call", 2)


def test_a_message_of_another_task_names_no_attempt() -> None:
    body = [["acme", "exec-1", "call", 2], {}, {}]
    assert _key_of(body, {"task": "executions.sweep"}) is None


@given(body=JSON, headers=st.dictionaries(st.text(max_size=8), JSON, max_size=4))
def test_any_body_either_names_an_attempt_or_none_and_never_raises(
    body: Any, headers: dict[str, Any]
) -> None:
    for named in (headers, {**headers, **STEP}):
        key = _key_of(body, named)
        assert key is None or isinstance(key, AttemptKey)


@given(args=st.tuples(JSON, JSON, JSON, JSON | st.just(float("inf"))))
def test_any_four_arguments_either_name_an_attempt_or_none_and_never_raise(
    args: tuple[Any, Any, Any, Any],
) -> None:
    key = _key_of([list(args), {}, {}], STEP)
    assert key is None or isinstance(key, AttemptKey)


def test_a_message_naming_no_valid_tenant_names_no_attempt() -> None:
    assert _key_of([["not a tenant!", "exec-1", "call", 1], {}, {}], STEP) is None


def test_a_countdown_is_the_seconds_until_its_eta() -> None:
    eta = datetime.now(UTC) + timedelta(seconds=30)
    assert 29 < _seconds_until(eta.isoformat()) <= 30
    assert _seconds_until((datetime.now(UTC) - timedelta(seconds=5)).isoformat()) == 0.0
    assert _seconds_until(None) == 0.0


@given(eta=JSON)
def test_an_unreadable_eta_means_now(eta: Any) -> None:
    assert _seconds_until(eta) >= 0.0
