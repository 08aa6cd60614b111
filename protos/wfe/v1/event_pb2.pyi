import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("topics", "after_event_id")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedScalarFieldContainer[str]
    after_event_id: int
    def __init__(self, topics: _Optional[_Iterable[str]] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "type", "event_time", "workflow_id", "execution_id", "workflow_updated", "workflow_execution_update", "workflow_step_completed", "workflow_execution_error", "workflow_execution_completed", "workflow_step_failed", "workflow_execution_control", "workflow_execution_log", "notification", "heartbeat")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_UPDATED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_EXECUTION_UPDATE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_STEP_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_EXECUTION_ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_EXECUTION_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_STEP_FAILED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_EXECUTION_CONTROL_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_EXECUTION_LOG_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    type: str
    event_time: _timestamp_pb2.Timestamp
    workflow_id: str
    execution_id: str
    workflow_updated: WorkflowUpdated
    workflow_execution_update: WorkflowExecutionUpdate
    workflow_step_completed: WorkflowStepCompleted
    workflow_execution_error: WorkflowExecutionError
    workflow_execution_completed: WorkflowExecutionCompleted
    workflow_step_failed: WorkflowStepFailed
    workflow_execution_control: WorkflowExecutionControl
    workflow_execution_log: WorkflowExecutionLog
    notification: Notification
    heartbeat: Heartbeat
    def __init__(self, event_id: _Optional[int] = ..., type: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., workflow_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., workflow_updated: _Optional[_Union[WorkflowUpdated, _Mapping]] = ..., workflow_execution_update: _Optional[_Union[WorkflowExecutionUpdate, _Mapping]] = ..., workflow_step_completed: _Optional[_Union[WorkflowStepCompleted, _Mapping]] = ..., workflow_execution_error: _Optional[_Union[WorkflowExecutionError, _Mapping]] = ..., workflow_execution_completed: _Optional[_Union[WorkflowExecutionCompleted, _Mapping]] = ..., workflow_step_failed: _Optional[_Union[WorkflowStepFailed, _Mapping]] = ..., workflow_execution_control: _Optional[_Union[WorkflowExecutionControl, _Mapping]] = ..., workflow_execution_log: _Optional[_Union[WorkflowExecutionLog, _Mapping]] = ..., notification: _Optional[_Union[Notification, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class WorkflowUpdated(_message.Message):
    __slots__ = ("name", "version", "previous_status", "status", "update_time", "updated_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    previous_status: str
    status: str
    update_time: _timestamp_pb2.Timestamp
    updated_by: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., previous_status: _Optional[str] = ..., status: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ...) -> None: ...

class WorkflowExecutionUpdate(_message.Message):
    __slots__ = ("status", "current_step", "progress", "details")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    status: str
    current_step: str
    progress: float
    details: ExecutionUpdateDetails
    def __init__(self, status: _Optional[str] = ..., current_step: _Optional[str] = ..., progress: _Optional[float] = ..., details: _Optional[_Union[ExecutionUpdateDetails, _Mapping]] = ...) -> None: ...

class ExecutionUpdateDetails(_message.Message):
    __slots__ = ("step_name", "start_time", "message")
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    step_name: str
    start_time: _timestamp_pb2.Timestamp
    message: str
    def __init__(self, step_name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class WorkflowStepCompleted(_message.Message):
    __slots__ = ("step_id", "step_name", "output", "duration_ms", "next_step")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    NEXT_STEP_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    step_name: str
    output: _struct_pb2.Value
    duration_ms: int
    next_step: str
    def __init__(self, step_id: _Optional[str] = ..., step_name: _Optional[str] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., duration_ms: _Optional[int] = ..., next_step: _Optional[str] = ...) -> None: ...

class EventError(_message.Message):
    __slots__ = ("step_id", "step_name", "message", "code", "details")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    step_name: str
    message: str
    code: str
    details: str
    def __init__(self, step_id: _Optional[str] = ..., step_name: _Optional[str] = ..., message: _Optional[str] = ..., code: _Optional[str] = ..., details: _Optional[str] = ...) -> None: ...

class WorkflowExecutionError(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: EventError
    def __init__(self, error: _Optional[_Union[EventError, _Mapping]] = ...) -> None: ...

class WorkflowExecutionCompleted(_message.Message):
    __slots__ = ("status", "start_time", "complete_time", "duration_ms", "output")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    status: str
    start_time: _timestamp_pb2.Timestamp
    complete_time: _timestamp_pb2.Timestamp
    duration_ms: int
    output: _struct_pb2.Struct
    def __init__(self, status: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[int] = ..., output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class WorkflowStepFailed(_message.Message):
    __slots__ = ("step_id", "step_name", "attempts", "error", "execution_continues")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_CONTINUES_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    step_name: str
    attempts: int
    error: EventError
    execution_continues: bool
    def __init__(self, step_id: _Optional[str] = ..., step_name: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[_Union[EventError, _Mapping]] = ..., execution_continues: _Optional[bool] = ...) -> None: ...

class WorkflowExecutionControl(_message.Message):
    __slots__ = ("action", "actor", "details")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    action: str
    actor: str
    details: _struct_pb2.Struct
    def __init__(self, action: _Optional[str] = ..., actor: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class WorkflowExecutionLog(_message.Message):
    __slots__ = ("step_id", "level", "message")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    level: str
    message: str
    def __init__(self, step_id: _Optional[str] = ..., level: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("kind", "message", "details", "id", "workflow_id", "execution_id", "source_event_id", "create_time", "read_time")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    details: _struct_pb2.Struct
    id: int
    workflow_id: str
    execution_id: str
    source_event_id: int
    create_time: _timestamp_pb2.Timestamp
    read_time: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., id: _Optional[int] = ..., workflow_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., source_event_id: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., read_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
