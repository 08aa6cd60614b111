"""The closed sets of states an execution, a step attempt and a dispatch row can be in.

They live with the models (not the engine) so the columns can be typed by them and
the database can refuse anything else: each column is stored as its enum's value,
the seed's lower-case word, and carries a CHECK constraint listing those values
(migration 0004). The engine and the service use the members, never bare strings.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum

STATUS_LENGTH = 16  # the columns' width since migration 0003


class ExecutionStatus(StrEnum):
    """`executions.status`: the seed's execution statuses."""

    QUEUED = "queued"  # waiting for a concurrency slot
    PENDING = "pending"  # admitted, its first step not yet claimed
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptStatus(StrEnum):
    """`step_attempts.status`: one attempt of one step."""

    SCHEDULED = "scheduled"  # due (now or later), not yet claimed by a worker
    RUNNING = "running"  # claimed; its worker holds the lease
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its execution ended while it was scheduled or running


class DispatchState(StrEnum):
    """`dispatch_queue.state`: where a due or running attempt's task stands."""

    DUE = "due"  # published (or about to be) to run at its due time
    WAITING = "waiting"  # due too far ahead for a countdown; the sweeper publishes it later
    RUNNING = "running"  # claimed by a worker; `fire_at` is its lease


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def stored_as_value(enum: type[StrEnum], column: str) -> Enum:
    """A VARCHAR column holding `enum`'s values, with a CHECK named `ck_<table>_<column>`.

    Rows load as enum members. Strings are accepted when they are one of the values, and
    anything else is refused before it reaches the database (which refuses it too).
    """
    return Enum(
        enum,
        name=column,
        native_enum=False,
        length=STATUS_LENGTH,
        values_callable=_values,
        validate_strings=True,
        create_constraint=True,
    )
