"""Step-level differences between two definitions, for reviewing a version before publishing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldChange:
    """`field` differs; a side is None when the field is absent there."""

    field: str
    before: Any
    after: Any


@dataclass(slots=True)
class Diff:
    added_steps: list[dict[str, Any]] = field(default_factory=list)
    removed_steps: list[dict[str, Any]] = field(default_factory=list)
    changed_steps: dict[str, list[FieldChange]] = field(default_factory=dict)
    changed_fields: list[FieldChange] = field(default_factory=list)


def _field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[FieldChange]:
    """Changes per top-level field; `config` is compared one key deeper, where forms change."""
    changes: list[FieldChange] = []
    for name in sorted({*before, *after}):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name == "config" and isinstance(old or {}, Mapping) and isinstance(new or {}, Mapping):
            changes.extend(
                FieldChange(f"config.{change.field}", change.before, change.after)
                for change in _field_changes(old or {}, new or {})
            )
        else:
            changes.append(FieldChange(name, old, new))
    return changes


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> Diff:
    """What changed from definition `before` to `after` (both in the stored form)."""
    result = Diff()
    old_steps = {step["id"]: step for step in before.get("steps", [])}
    new_steps = {step["id"]: step for step in after.get("steps", [])}
    result.added_steps = [step for step_id, step in new_steps.items() if step_id not in old_steps]
    result.removed_steps = [step for step_id, step in old_steps.items() if step_id not in new_steps]
    for step_id, step in new_steps.items():
        if step_id in old_steps:
            changes = _field_changes(old_steps[step_id], step)
            if changes:
                result.changed_steps[step_id] = changes
    for name in ("name", "description", "input_schema"):
        if before.get(name) != after.get(name):
            result.changed_fields.append(FieldChange(name, before.get(name), after.get(name)))
    old_order = [s for s in old_steps if s in new_steps]
    new_order = [s for s in new_steps if s in old_steps]
    if old_order != new_order:
        result.changed_fields.append(FieldChange("step_order", list(old_steps), list(new_steps)))
    return result
