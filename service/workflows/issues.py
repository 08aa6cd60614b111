"""What validation finds: issues with a code, a message, the step and the field they concern."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

ERROR_CODES: Final = frozenset(
    {
        "invalid_field",
        "invalid_input_schema",
        "missing_steps",
        "invalid_step",
        "invalid_step_id",
        "duplicate_step_id",
        "unknown_step_type",
        "tier_restriction",
        "invalid_config",
        "invalid_retry_policy",
        "invalid_error_policy",
        "invalid_timeout",
        "invalid_next",
        "invalid_expression",
        "invalid_path",
        "unknown_path_reference",
        "unknown_step_reference",
        "missing_entry_step",
        "multiple_entry_steps",
        "missing_default",
        "no_reachable_output",
        "invalid_cycle",
        "loop_body_not_closed",
        "loop_body_escapes",
        "loop_nesting_too_deep",
        "branches_overlap",
        "branch_escapes",
        "graph_too_complex",
    }
)
WARNING_CODES: Final = frozenset(
    {
        "expression_simplification",
        "unreachable_step",
        "reference_not_before",
        "unknown_output_field",
        "unknown_adapter",
    }
)


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem; `field` is a dotted path such as `steps[2].config.default`."""

    code: str
    message: str
    step_id: str = ""
    field: str = ""
    position: int | None = None


@dataclass(slots=True)
class Report:
    """Errors make a definition unacceptable; warnings are advice that never blocks a save."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def error(
        self,
        code: str,
        message: str,
        *,
        step_id: str = "",
        field: str = "",
        position: int | None = None,
    ) -> None:
        self.errors.append(Issue(code, message, step_id, field, position))

    def warn(
        self,
        code: str,
        message: str,
        *,
        step_id: str = "",
        field: str = "",
        position: int | None = None,
    ) -> None:
        self.warnings.append(Issue(code, message, step_id, field, position))
