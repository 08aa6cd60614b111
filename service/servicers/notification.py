"""`wfe.v1.NotificationService`: the caller's own notifications and what they want of them."""

from __future__ import annotations

from typing import Any, Final, TypeAlias

from google.protobuf import json_format, struct_pb2
from grpc import aio

from foundation.errors import FieldViolation, InvalidInput
from persistence.models import Notification
from service import pagination
from service.notifications import inbox
from service.servicers.messages import timestamp
from tenancy import CallIdentity, current_identity
from tenancy.database import TenantDatabase
from wfe.v1 import event_pb2, notification_pb2, notification_pb2_grpc

Context: TypeAlias = aio.ServicerContext[Any, Any]

MAX_IDS: Final = 1000


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(self, database: TenantDatabase, tokens: pagination.PageTokens) -> None:
        self._database = database
        self._tokens = tokens

    async def ListNotifications(
        self, request: notification_pb2.ListNotificationsRequest, context: Context
    ) -> notification_pb2.ListNotificationsResponse:
        caller = current_identity()
        size = pagination.page_size(request.page_size)
        listing = _listing(caller, request.unread_only)
        key = self._tokens.decode(request.page_token, caller.tenant_id, listing)
        before = _position(key)
        async with self._database.transaction(caller.tenant_id) as session:
            rows = await inbox.page(
                session,
                caller.subject,
                unread_only=request.unread_only,
                before=before,
                limit=size + 1,
            )
            unread = await inbox.unread(session, caller.subject)
        token = self._tokens.after(rows, size, caller.tenant_id, listing, lambda row: [row.id])
        return notification_pb2.ListNotificationsResponse(
            notifications=[notification_message(row) for row in rows[:size]],
            next_page_token=token,
            unread_count=unread,
        )

    async def MarkNotificationsRead(
        self, request: notification_pb2.MarkNotificationsReadRequest, context: Context
    ) -> notification_pb2.MarkNotificationsReadResponse:
        caller = current_identity()
        if request.all == bool(request.ids):
            raise InvalidInput(
                "give either ids or all",
                violations=[FieldViolation("ids", "the notifications to mark, or set all")],
            )
        if len(request.ids) > MAX_IDS:
            raise InvalidInput(
                f"at most {MAX_IDS} ids at once",
                violations=[FieldViolation("ids", f"at most {MAX_IDS}")],
            )
        async with self._database.transaction(caller.tenant_id) as session:
            marked = await inbox.mark_read(
                session, caller.subject, None if request.all else list(request.ids)
            )
        return notification_pb2.MarkNotificationsReadResponse(marked=marked)

    async def GetNotificationSettings(
        self, request: notification_pb2.GetNotificationSettingsRequest, context: Context
    ) -> notification_pb2.GetNotificationSettingsResponse:
        caller = current_identity()
        async with self._database.transaction(caller.tenant_id) as session:
            wanted = await inbox.completed_wanted(session, caller.subject)
        return notification_pb2.GetNotificationSettingsResponse(
            settings=notification_pb2.NotificationSettings(on_completed=wanted)
        )

    async def UpdateNotificationSettings(
        self, request: notification_pb2.UpdateNotificationSettingsRequest, context: Context
    ) -> notification_pb2.UpdateNotificationSettingsResponse:
        caller = current_identity()
        wanted = request.settings.on_completed
        async with self._database.transaction(caller.tenant_id) as session:
            await inbox.want_completed(session, caller.tenant_id, caller.subject, wanted)
        return notification_pb2.UpdateNotificationSettingsResponse(
            settings=notification_pb2.NotificationSettings(on_completed=wanted)
        )


def notification_message(row: Notification) -> event_pb2.Notification:
    details = struct_pb2.Struct()
    json_format.ParseDict(row.details or {}, details)
    message = event_pb2.Notification(
        id=row.id,
        kind=row.kind,
        message=row.message,
        details=details,
        workflow_id=row.workflow_id or "",
        execution_id=row.execution_id or "",
        source_event_id=row.event_id,
        create_time=timestamp(row.created_at),
    )
    if row.read_at is not None:
        message.read_time.CopyFrom(timestamp(row.read_at))
    return message


def _listing(caller: CallIdentity, unread_only: bool) -> str:
    """A page token is good for the same user and filter only."""
    return f"notifications\0{caller.subject}\0{int(unread_only)}"


def _position(key: list[Any] | None) -> int | None:
    if key is None:
        return None
    [before] = key  # a token this service signed: [id]
    return int(before)
