"""Every ORM model, imported here so the metadata is complete for migrations."""

from service.persistence.models.event import Event
from service.persistence.models.tenant import Tenant
from service.persistence.models.usage import UsageCounter

__all__ = ["Event", "Tenant", "UsageCounter"]
