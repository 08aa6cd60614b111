"""The service's errors, as data.

Every failure a client can see is a `WfeError`; one interceptor turns it into a
`google.rpc.Status`. The tree::

    WfeError                       (reason INTERNAL)
    ├── Unauthenticated            (UNAUTHENTICATED)
    ├── PermissionDenied           (PERMISSION_DENIED)
    ├── InvalidInput               (INVALID_INPUT, carries field violations)
    │   └── AlreadyExists          the id the request chooses is taken
    ├── InvalidWorkflowDefinition  (INVALID_WORKFLOW_DEFINITION, carries field violations)
    ├── StepConfigurationError     (STEP_CONFIGURATION_ERROR)
    ├── WorkflowNotFound           (WORKFLOW_NOT_FOUND)
    ├── ExecutionNotFound          (EXECUTION_NOT_FOUND)
    ├── WorkflowExecutionError     (WORKFLOW_EXECUTION_ERROR)
    │   └── ExecutionStateConflict not in a state that allows the action
    ├── ExecutionTimeout           (TIMEOUT)
    ├── WorkTimeout                (TIMEOUT: a request's own work ran past its deadline)
    ├── Unavailable                (UNAVAILABLE: the server is going away; call again)
    └── TierRestriction            (TIER_RESTRICTION)
        ├── QuotaExhausted         a quota is used up
        └── FeatureNotInPlan       the plan does not include the feature

`STATUS_CODES` is the one table from error to gRPC status code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Final

import grpc

DOMAIN: Final = "wfe"


class Reason(StrEnum):
    """Machine-readable error reasons: the seed's codes in UPPER_SNAKE_CASE."""

    WORKFLOW_NOT_FOUND = "WORKFLOW_NOT_FOUND"
    EXECUTION_NOT_FOUND = "EXECUTION_NOT_FOUND"
    INVALID_WORKFLOW_DEFINITION = "INVALID_WORKFLOW_DEFINITION"
    WORKFLOW_EXECUTION_ERROR = "WORKFLOW_EXECUTION_ERROR"
    STEP_CONFIGURATION_ERROR = "STEP_CONFIGURATION_ERROR"
    INVALID_INPUT = "INVALID_INPUT"
    TIMEOUT = "TIMEOUT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    TIER_RESTRICTION = "TIER_RESTRICTION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field: a dotted path into the request and why it is wrong."""

    field: str
    description: str


class WfeError(Exception):
    """Root of every error a client may see.

    Args:
        message: Human-readable, safe to show to the caller.
        metadata: Machine-readable values; every value the message mentions is here too.
        violations: Field-level problems with the request, if any.
    """

    reason: ClassVar[Reason] = Reason.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, object] | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self._message = message
        self._metadata = {k: _as_text(v) for k, v in (metadata or {}).items()}
        self._violations = tuple(violations)

    @property
    def message(self) -> str:
        return self._message

    @property
    def metadata(self) -> Mapping[str, str]:
        return dict(self._metadata)

    @property
    def violations(self) -> tuple[FieldViolation, ...]:
        return self._violations

    @property
    def code(self) -> grpc.StatusCode:
        for cls in type(self).__mro__:
            if cls in STATUS_CODES:
                return STATUS_CODES[cls]
        return grpc.StatusCode.INTERNAL


class Unauthenticated(WfeError):
    """The call carries no valid credentials."""

    reason = Reason.UNAUTHENTICATED


class PermissionDenied(WfeError):
    """The caller is known but may not do this (e.g. the tenant is not granted)."""

    reason = Reason.PERMISSION_DENIED


class InvalidInput(WfeError):
    """The request's data is invalid; `violations` says where."""

    reason = Reason.INVALID_INPUT


class AlreadyExists(InvalidInput):
    """The id the request chooses for a new resource is taken (ALREADY_EXISTS, not a bad value)."""


class InvalidWorkflowDefinition(WfeError):
    """A workflow definition breaks a rule; `violations` lists every problem."""

    reason = Reason.INVALID_WORKFLOW_DEFINITION


class StepConfigurationError(WfeError):
    """A step's configuration is invalid."""

    reason = Reason.STEP_CONFIGURATION_ERROR


class WorkflowNotFound(WfeError):
    """No such workflow in the caller's tenant (whether or not another tenant has one)."""

    reason = Reason.WORKFLOW_NOT_FOUND


class ExecutionNotFound(WfeError):
    """No such execution in the caller's tenant."""

    reason = Reason.EXECUTION_NOT_FOUND


class WorkflowExecutionError(WfeError):
    """An execution could not proceed."""

    reason = Reason.WORKFLOW_EXECUTION_ERROR


class ExecutionStateConflict(WorkflowExecutionError):
    """The execution (or its workflow) is not in a state that allows the action."""


class ExecutionTimeout(WfeError):
    """An execution ran past its plan's maximum time."""

    reason = Reason.TIMEOUT


class WorkTimeout(WfeError):
    """A request's own work (validating a definition, say) ran past its deadline."""

    reason = Reason.TIMEOUT


class Unavailable(WfeError):
    """The server is shutting down, or its database cannot be reached for a moment: the call
    may be made again, elsewhere or shortly (a stream resumes)."""

    reason = Reason.UNAVAILABLE


class TierRestriction(WfeError):
    """The tenant's plan does not allow this; metadata says tier, limit and used."""

    reason = Reason.TIER_RESTRICTION


class QuotaExhausted(TierRestriction):
    """A counted quota of the plan is used up."""


class FeatureNotInPlan(TierRestriction):
    """The plan does not include the feature at all."""


STATUS_CODES: Final[Mapping[type[WfeError], grpc.StatusCode]] = {
    WfeError: grpc.StatusCode.INTERNAL,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    InvalidWorkflowDefinition: grpc.StatusCode.INVALID_ARGUMENT,
    StepConfigurationError: grpc.StatusCode.INVALID_ARGUMENT,
    WorkflowNotFound: grpc.StatusCode.NOT_FOUND,
    ExecutionNotFound: grpc.StatusCode.NOT_FOUND,
    WorkflowExecutionError: grpc.StatusCode.ABORTED,
    ExecutionStateConflict: grpc.StatusCode.FAILED_PRECONDITION,
    ExecutionTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    WorkTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    TierRestriction: grpc.StatusCode.FAILED_PRECONDITION,
    QuotaExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    FeatureNotInPlan: grpc.StatusCode.FAILED_PRECONDITION,
}


def _as_text(value: object) -> str:
    if value is None:
        return "unlimited"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
