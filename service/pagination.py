"""Opaque page tokens (AIP-158), bound to the tenant and the filter that produced them.

A token carries the last key of its page; it is refused when it comes back with
another tenant or another filter, so no page can ever step outside its listing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

from foundation.errors import FieldViolation, InvalidInput
from tenancy import TenantId

Row = TypeVar("Row")

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200


def page_size(requested: int) -> int:
    """The page size to use: the default for 0, at most MAX_PAGE_SIZE."""
    if requested < 0:
        raise InvalidInput(
            "page_size must not be negative",
            violations=[FieldViolation("page_size", "must be 0 (default) or positive")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode(tenant: TenantId, listing: str, key: list[Any]) -> str:
    raw = json.dumps({"t": tenant, "l": listing, "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, tenant: TenantId, listing: str) -> list[Any] | None:
    """The key after which the next page starts; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        content = json.loads(raw)
        valid = (
            isinstance(content, dict)
            and content.get("t") == tenant
            and content.get("l") == listing
            and isinstance(content.get("k"), list)
        )
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise InvalidInput(
            "page_token is not one this listing issued",
            violations=[FieldViolation("page_token", "use next_page_token from the same listing")],
        )
    key: list[Any] = content["k"]
    return key


def next_token(
    rows: Sequence[Row], size: int, tenant: TenantId, listing: str, key: Callable[[Row], list[Any]]
) -> str:
    """The token of the page after `rows` (fetched `size + 1` to tell); empty at the end."""
    if len(rows) <= size:
        return ""
    return encode(tenant, listing, key(rows[size - 1]))


class Created(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


def creation_key(row: Created) -> list[Any]:
    """Where a newest-first listing by (created_at, id) resumes: after this row."""
    return [row.created_at.isoformat(), row.id]
