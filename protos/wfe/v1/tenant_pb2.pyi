import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_FREE: _ClassVar[Tier]
    TIER_PROFESSIONAL: _ClassVar[Tier]
    TIER_ENTERPRISE: _ClassVar[Tier]

class StepTypeAccess(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_TYPE_ACCESS_UNSPECIFIED: _ClassVar[StepTypeAccess]
    STEP_TYPE_ACCESS_BASIC: _ClassVar[StepTypeAccess]
    STEP_TYPE_ACCESS_ADVANCED: _ClassVar[StepTypeAccess]
    STEP_TYPE_ACCESS_ALL_AND_CUSTOM: _ClassVar[StepTypeAccess]

class VersioningLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSIONING_LEVEL_UNSPECIFIED: _ClassVar[VersioningLevel]
    VERSIONING_LEVEL_NONE: _ClassVar[VersioningLevel]
    VERSIONING_LEVEL_BASIC: _ClassVar[VersioningLevel]
    VERSIONING_LEVEL_FULL: _ClassVar[VersioningLevel]

class TemplateAccess(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEMPLATE_ACCESS_UNSPECIFIED: _ClassVar[TemplateAccess]
    TEMPLATE_ACCESS_BASIC: _ClassVar[TemplateAccess]
    TEMPLATE_ACCESS_STANDARD: _ClassVar[TemplateAccess]
    TEMPLATE_ACCESS_ALL_AND_CUSTOM: _ClassVar[TemplateAccess]

class LogDetail(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_DETAIL_UNSPECIFIED: _ClassVar[LogDetail]
    LOG_DETAIL_NONE: _ClassVar[LogDetail]
    LOG_DETAIL_STANDARD: _ClassVar[LogDetail]
    LOG_DETAIL_EXTENDED: _ClassVar[LogDetail]

class MonitoringLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MONITORING_LEVEL_UNSPECIFIED: _ClassVar[MonitoringLevel]
    MONITORING_LEVEL_LIMITED: _ClassVar[MonitoringLevel]
    MONITORING_LEVEL_FULL: _ClassVar[MonitoringLevel]
    MONITORING_LEVEL_ADVANCED: _ClassVar[MonitoringLevel]
TIER_UNSPECIFIED: Tier
TIER_FREE: Tier
TIER_PROFESSIONAL: Tier
TIER_ENTERPRISE: Tier
STEP_TYPE_ACCESS_UNSPECIFIED: StepTypeAccess
STEP_TYPE_ACCESS_BASIC: StepTypeAccess
STEP_TYPE_ACCESS_ADVANCED: StepTypeAccess
STEP_TYPE_ACCESS_ALL_AND_CUSTOM: StepTypeAccess
VERSIONING_LEVEL_UNSPECIFIED: VersioningLevel
VERSIONING_LEVEL_NONE: VersioningLevel
VERSIONING_LEVEL_BASIC: VersioningLevel
VERSIONING_LEVEL_FULL: VersioningLevel
TEMPLATE_ACCESS_UNSPECIFIED: TemplateAccess
TEMPLATE_ACCESS_BASIC: TemplateAccess
TEMPLATE_ACCESS_STANDARD: TemplateAccess
TEMPLATE_ACCESS_ALL_AND_CUSTOM: TemplateAccess
LOG_DETAIL_UNSPECIFIED: LogDetail
LOG_DETAIL_NONE: LogDetail
LOG_DETAIL_STANDARD: LogDetail
LOG_DETAIL_EXTENDED: LogDetail
MONITORING_LEVEL_UNSPECIFIED: MonitoringLevel
MONITORING_LEVEL_LIMITED: MonitoringLevel
MONITORING_LEVEL_FULL: MonitoringLevel
MONITORING_LEVEL_ADVANCED: MonitoringLevel

class GetTenantRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTenantResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("id", "name", "tier", "limits", "usage", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    tier: Tier
    limits: TierLimits
    usage: TenantUsage
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., limits: _Optional[_Union[TierLimits, _Mapping]] = ..., usage: _Optional[_Union[TenantUsage, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TierLimits(_message.Message):
    __slots__ = ("max_workflows", "max_steps_per_workflow", "max_concurrent_executions", "max_executions_per_day", "history_retention_days", "max_execution_seconds", "max_templates", "step_types", "versioning", "templates", "log_detail", "monitoring", "webhooks", "max_definition_bytes", "max_input_bytes", "max_output_bytes", "max_custom_templates", "max_subscriptions", "max_loop_iterations")
    MAX_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_PER_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTIONS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    STEP_TYPES_FIELD_NUMBER: _ClassVar[int]
    VERSIONING_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    LOG_DETAIL_FIELD_NUMBER: _ClassVar[int]
    MONITORING_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    MAX_DEFINITION_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CUSTOM_TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    MAX_SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_LOOP_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    max_workflows: int
    max_steps_per_workflow: int
    max_concurrent_executions: int
    max_executions_per_day: int
    history_retention_days: int
    max_execution_seconds: int
    max_templates: int
    step_types: StepTypeAccess
    versioning: VersioningLevel
    templates: TemplateAccess
    log_detail: LogDetail
    monitoring: MonitoringLevel
    webhooks: bool
    max_definition_bytes: int
    max_input_bytes: int
    max_output_bytes: int
    max_custom_templates: int
    max_subscriptions: int
    max_loop_iterations: int
    def __init__(self, max_workflows: _Optional[int] = ..., max_steps_per_workflow: _Optional[int] = ..., max_concurrent_executions: _Optional[int] = ..., max_executions_per_day: _Optional[int] = ..., history_retention_days: _Optional[int] = ..., max_execution_seconds: _Optional[int] = ..., max_templates: _Optional[int] = ..., step_types: _Optional[_Union[StepTypeAccess, str]] = ..., versioning: _Optional[_Union[VersioningLevel, str]] = ..., templates: _Optional[_Union[TemplateAccess, str]] = ..., log_detail: _Optional[_Union[LogDetail, str]] = ..., monitoring: _Optional[_Union[MonitoringLevel, str]] = ..., webhooks: _Optional[bool] = ..., max_definition_bytes: _Optional[int] = ..., max_input_bytes: _Optional[int] = ..., max_output_bytes: _Optional[int] = ..., max_custom_templates: _Optional[int] = ..., max_subscriptions: _Optional[int] = ..., max_loop_iterations: _Optional[int] = ...) -> None: ...

class TenantUsage(_message.Message):
    __slots__ = ("workflows", "concurrent_executions", "executions_today", "executions_reset_time", "custom_templates")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONS_TODAY_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONS_RESET_TIME_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    workflows: int
    concurrent_executions: int
    executions_today: int
    executions_reset_time: _timestamp_pb2.Timestamp
    custom_templates: int
    def __init__(self, workflows: _Optional[int] = ..., concurrent_executions: _Optional[int] = ..., executions_today: _Optional[int] = ..., executions_reset_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., custom_templates: _Optional[int] = ...) -> None: ...
