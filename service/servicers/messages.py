"""Conversions every servicer shares: timestamps and tiers as the protos spell them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from foundation.errors import FieldViolation, InvalidInput
from tiers import Tier
from wfe.v1 import execution_pb2, tenant_pb2

TIERS: Final = {
    Tier.FREE: tenant_pb2.TIER_FREE,
    Tier.PROFESSIONAL: tenant_pb2.TIER_PROFESSIONAL,
    Tier.ENTERPRISE: tenant_pb2.TIER_ENTERPRISE,
}


EARLIEST_SECONDS: Final = -62135596800  # 0001-01-01T00:00:00Z, the least a Timestamp holds
LATEST_SECONDS: Final = 253402300799  # 9999-12-31T23:59:59Z


def moment_of(request: Message, field: str) -> datetime | None:
    """A request's optional time `field`; INVALID_INPUT for a Timestamp outside what the
    type allows (it could not be turned into a datetime)."""
    if not request.HasField(field):
        return None
    stamp = getattr(request, field)
    if not (
        EARLIEST_SECONDS <= stamp.seconds <= LATEST_SECONDS and 0 <= stamp.nanos < 1_000_000_000
    ):
        raise InvalidInput(
            f"{field} is not a valid timestamp",
            violations=[
                FieldViolation(field, "between 0001-01-01 and 9999-12-31, nanos 0-999999999")
            ],
        )
    moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    return moment


def error_message(error: Mapping[str, Any] | None) -> execution_pb2.ExecutionError | None:
    """A stored error (`StepFailure.as_dict`, with the step when known) as the API shows it."""
    if not error:
        return None
    return execution_pb2.ExecutionError(
        code=str(error.get("code") or ""),
        message=str(error.get("message") or ""),
        details=str(error.get("details") or ""),
        step_id=str(error.get("step_id") or ""),
        step_name=str(error.get("step_name") or ""),
    )


def value_message(item: Any) -> struct_pb2.Value:
    """Any JSON value as a `google.protobuf.Value`."""
    message = struct_pb2.Value()
    json_format.ParseDict(item, message)
    return message


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
