"""Text a request may carry: no NUL character, which no database column can store.

PostgreSQL refuses U+0000 in `text` and in `jsonb` alike, so a string holding one would
fail deep in a transaction as a database error; it is refused as the sender's mistake
instead, naming the field, before any handler runs.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message

from service.fields import leaves, scalars

NUL: Final = "\x00"


def first_nul(message: Message) -> str | None:
    """The path of the first string (value or key) in `message` that holds a NUL, if any."""
    if not any(isinstance(value, str) and NUL in value for value in leaves(message)):
        return None
    for value, where in scalars(message):
        if isinstance(value, str) and NUL in value:
            return where or "request"
    return None
