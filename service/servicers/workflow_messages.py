"""Workflow rows, versions, validation reports and diffs as the `wfe.v1` messages show them."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from engine.tools import ToolMode
from persistence.models import Workflow, WorkflowVersion
from service.servicers.messages import TIERS, timestamp
from service.workflows import documents
from service.workflows import service as workflows
from service.workflows.diff import FieldChange
from service.workflows.issues import Report
from service.workflows.templates import Template
from wfe.v1 import workflow_pb2

Status = workflows.Status
STATUSES = {
    Status.DRAFT: workflow_pb2.WORKFLOW_STATUS_DRAFT,
    Status.ACTIVE: workflow_pb2.WORKFLOW_STATUS_ACTIVE,
    Status.ARCHIVED: workflow_pb2.WORKFLOW_STATUS_ARCHIVED,
}
STATUS_FILTERS = {number: status for status, number in STATUSES.items()}
TOOL_MODES = {
    ToolMode.INLINE: workflow_pb2.TOOL_MODE_INLINE,
    ToolMode.DISPATCHED: workflow_pb2.TOOL_MODE_DISPATCHED,
}
UPDATABLE = frozenset(documents.DEFINITION_FIELDS)


def workflow_message(row: Workflow) -> workflow_pb2.Workflow:
    message = workflow_pb2.Workflow(
        id=row.id,
        status=STATUSES[Status(row.status)],
        version=row.version,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        created_by=row.created_by,
        updated_by=row.updated_by,
        published_version=row.published_version or 0,
    )
    documents.fill_definition(message, row.definition)
    return message


def version_message(row: WorkflowVersion) -> workflow_pb2.WorkflowVersion:
    definition = workflow_pb2.Workflow()
    documents.fill_definition(definition, row.definition)
    message = workflow_pb2.WorkflowVersion(
        workflow_id=row.workflow_id,
        version=row.version,
        name=definition.name,
        description=definition.description,
        input_schema=definition.input_schema,
        steps=definition.steps,
        create_time=timestamp(row.created_at),
        created_by=row.created_by,
        release_notes=row.release_notes or "",
        published_by=row.published_by or "",
    )
    if row.published_at is not None:
        message.publish_time.CopyFrom(timestamp(row.published_at))
    return message


def template_message(template: Template, available: bool) -> workflow_pb2.Template:
    message = workflow_pb2.Template(
        id=template.id,
        name=template.name,
        description=template.description,
        category=template.category,
        minimum_tier=TIERS[template.tier],
        available=available,
        workflow=documents.parse_document(template.workflow),
        custom=template.custom,
    )
    if template.origin is not None:
        message.source_workflow_id = template.origin.workflow_id
        message.source_version = template.origin.version
        message.create_time.CopyFrom(timestamp(template.origin.created_at))
        message.created_by = template.origin.created_by
    return message


def issue_messages(report: Report) -> dict[str, Any]:
    def convert(issues: list[Any]) -> list[workflow_pb2.ValidationIssue]:
        return [
            workflow_pb2.ValidationIssue(
                code=i.code,
                message=i.message,
                step_id=i.step_id,
                field=i.field,
                position=i.position,
            )
            for i in issues
        ]

    return {
        "valid": report.valid,
        "errors": convert(report.errors),
        "warnings": convert(report.warnings),
    }


def struct(value: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def value(item: Any) -> struct_pb2.Value | None:
    if item is None:
        return None
    message = struct_pb2.Value()
    json_format.ParseDict(item, message)
    return message


def change_message(change: FieldChange) -> workflow_pb2.FieldChange:
    return workflow_pb2.FieldChange(
        field=change.field, before=value(change.before), after=value(change.after)
    )
