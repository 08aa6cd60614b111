"""Every ORM model, imported here so the metadata is complete for migrations."""

from persistence.models.event import Event
from persistence.models.execution import Dispatch, Execution, StepAttempt
from persistence.models.notification import Notification, NotificationPreference, Projection
from persistence.models.statuses import AttemptStatus, DispatchState, ExecutionStatus
from persistence.models.template import WorkflowTemplate
from persistence.models.tenant import Tenant
from persistence.models.usage import UsageCounter
from persistence.models.workflow import Workflow, WorkflowVersion

__all__ = [
    "AttemptStatus",
    "Dispatch",
    "DispatchState",
    "Event",
    "Execution",
    "ExecutionStatus",
    "Notification",
    "NotificationPreference",
    "Projection",
    "StepAttempt",
    "Tenant",
    "UsageCounter",
    "Workflow",
    "WorkflowTemplate",
    "WorkflowVersion",
]
