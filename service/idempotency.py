"""Request ids (AIP-155): a retried create with the same id returns what the first one made."""

from __future__ import annotations

from typing import Final

from service.errors import FieldViolation, InvalidInput

MAX_REQUEST_ID: Final = 64


def check_request_id(request_id: str) -> None:
    """INVALID_INPUT for a request id longer than the column that keeps it."""
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidInput(
            f"request_id is at most {MAX_REQUEST_ID} characters",
            violations=[FieldViolation("request_id", f"at most {MAX_REQUEST_ID} characters")],
        )
