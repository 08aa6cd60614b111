"""Request ids (AIP-155): a retried create with the same id returns what the first one made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from sqlalchemy.exc import IntegrityError

from foundation.errors import FieldViolation, InvalidInput

MAX_REQUEST_ID: Final = 64
Made = TypeVar("Made")


def check_request_id(request_id: str) -> None:
    """INVALID_INPUT for a request id longer than the column that keeps it."""
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidInput(
            f"request_id is at most {MAX_REQUEST_ID} characters",
            violations=[FieldViolation("request_id", f"at most {MAX_REQUEST_ID} characters")],
        )


async def create_once(
    request_id: str,
    create: Callable[[], Awaitable[Made]],
    find: Callable[[], Awaitable[Made | None]],
) -> Made:
    """What `create` makes, or what a concurrent call with the same request id made.

    `create` runs in its own transaction and answers with an earlier call's result when
    one is stored; two calls racing past that look-up meet the unique request id at
    commit, and the loser answers with the winner's result (`find`, a new transaction).
    """
    check_request_id(request_id)
    try:
        return await create()
    except IntegrityError:
        if not request_id:
            raise
        found = await find()
        if found is None:
            raise
        return found
