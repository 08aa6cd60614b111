"""Every ORM model, imported here so the metadata is complete for migrations."""

from service.persistence.models.event import Event
from service.persistence.models.execution import Dispatch, Execution, StepAttempt
from service.persistence.models.tenant import Tenant
from service.persistence.models.usage import UsageCounter
from service.persistence.models.workflow import Workflow, WorkflowVersion

__all__ = [
    "Dispatch",
    "Event",
    "Execution",
    "StepAttempt",
    "Tenant",
    "UsageCounter",
    "Workflow",
    "WorkflowVersion",
]
