"""Conversions every servicer shares: timestamps and tiers as the protos spell them."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from tiers import Tier
from wfe.v1 import tenant_pb2

TIERS: Final = {
    Tier.FREE: tenant_pb2.TIER_FREE,
    Tier.PROFESSIONAL: tenant_pb2.TIER_PROFESSIONAL,
    Tier.ENTERPRISE: tenant_pb2.TIER_ENTERPRISE,
}


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
