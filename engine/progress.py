"""The seed's `steps` structure: total, current step number and the list of steps.

Every function returns a new structure (JSON columns are only saved when replaced) and
never changes the one it is given; `update` copies only the entry it changes, so a step
of a long workflow does not pay for copying every other entry.
Entries carry the seed's keys (`name`, `status`, `started_at`, `completed_at`,
`error`) plus `id`, `attempts` and `duration_ms`, which the seed leaves open.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.titles import step_title


class StepStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


DONE = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED})


def iso(moment: datetime | None) -> str | None:
    """The seed's timestamp form: UTC with a `Z`."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def initial(definition: Mapping[str, Any]) -> dict[str, Any]:
    """All steps pending, in definition order, none current."""
    steps = definition.get("steps", [])
    return {
        "total_steps": len(steps),
        "current_step_number": 0,
        "step_list": [
            {
                "id": step["id"],
                "name": step_title(step),
                "status": StepStatus.PENDING.value,
                "started_at": None,
                "completed_at": None,
                "error": None,
                "attempts": 0,
                "duration_ms": None,
            }
            for step in steps
        ],
    }


def number_of(steps: Mapping[str, Any], step_id: str) -> int:
    """1-based position of a step in the list."""
    for index, entry in enumerate(steps["step_list"]):
        if entry["id"] == step_id:
            return index + 1
    raise KeyError(step_id)


def position(steps: Mapping[str, Any], step_id: str, hint: int | None) -> int:
    """1-based position of a step: `hint` when it is right, else found by a search."""
    listed = steps["step_list"]
    if hint is not None and 0 < hint <= len(listed) and listed[hint - 1]["id"] == step_id:
        return hint
    return number_of(steps, step_id)


def entry(steps: Mapping[str, Any], step_id: str) -> Mapping[str, Any]:
    return steps["step_list"][number_of(steps, step_id) - 1]  # type: ignore[no-any-return]


def update(
    steps: Mapping[str, Any],
    step_id: str,
    *,
    current: bool = False,
    number: int | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A copy with one entry changed (and, if `current`, that step made the current one).

    The other entries are shared with `steps`, which no function here changes in place.
    `number`, the entry's position if the caller knows it, spares a search of the list.
    """
    number = position(steps, step_id, number)
    step_list = list(steps["step_list"])
    step_list[number - 1] = {**step_list[number - 1], **changes}
    updated = {**steps, "step_list": step_list}
    if current:
        updated["current_step_number"] = number
    return updated


def finish(steps: Mapping[str, Any], unreached: StepStatus) -> dict[str, Any]:
    """A copy where every step not done is marked `unreached` (skipped or cancelled); one
    cancelled already (a parallel's losing branch) stays so."""
    updated = copy.deepcopy(dict(steps))
    for item in updated["step_list"]:
        if item["status"] not in DONE and item["status"] != StepStatus.CANCELLED.value:
            item["status"] = unreached.value
    return updated


def reset(steps: Mapping[str, Any], step_ids: set[str]) -> dict[str, Any]:
    """A copy where the given steps are pending again (a retry or rerun will run them)."""
    updated = copy.deepcopy(dict(steps))
    for item in updated["step_list"]:
        if item["id"] in step_ids:
            item.update(
                status=StepStatus.PENDING.value,
                started_at=None,
                completed_at=None,
                error=None,
                attempts=0,
                duration_ms=None,
            )
    return updated


def done_count(steps: Mapping[str, Any]) -> int:
    """Steps that are done (completed, failed-and-continued or skipped)."""
    return sum(1 for item in steps["step_list"] if item["status"] in DONE)


def fraction(done: int, steps: Mapping[str, Any]) -> float:
    return round(done / (steps["total_steps"] or 1), 4)


def fraction_done(steps: Mapping[str, Any]) -> float:
    """Share of steps that are done (completed, failed-and-continued or skipped)."""
    return fraction(done_count(steps), steps)
