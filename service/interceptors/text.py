"""Text a request may carry: no NUL character, which no database column can store.

PostgreSQL refuses U+0000 in `text` and in `jsonb` alike, so a string holding one would
fail deep in a transaction as a database error; it is refused as the sender's mistake
instead, naming the field, before any handler runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Final

from google.protobuf.message import Message

NUL: Final = "\x00"
STRUCT: Final = "google.protobuf.Struct"
VALUE: Final = "google.protobuf.Value"
LIST: Final = "google.protobuf.ListValue"
NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def first_nul(message: Message) -> str | None:
    """The path of the first string (value or key) in `message` that holds a NUL, if any."""
    return next(_nul_paths(message), None)


def _nul_paths(message: Message) -> Iterator[str]:
    pending: list[tuple[object, str]] = [(message, "")]
    while pending:
        current, where = pending.pop()
        if isinstance(current, str):
            if NUL in current:
                yield where or "request"
            continue
        if not isinstance(current, Message):
            continue
        name = current.DESCRIPTOR.full_name
        if name == VALUE:
            kind = current.WhichOneof("kind")
            if kind is not None:
                pending.append((getattr(current, kind), where))
        elif name == STRUCT:
            for key, item in current.fields.items():
                pending.extend([(key, where), (item, _key(where, key))])
        elif name == LIST:
            pending.extend((item, f"{where}[{i}]") for i, item in enumerate(current.values))
        else:
            pending.extend(_children(current, where))


def _children(message: Message, path: str) -> Iterator[tuple[object, str]]:
    for field, content in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in content.items():
                yield key, where
                yield item, _key(where, key)
        elif field.is_repeated:
            yield from ((item, f"{where}[{index}]") for index, item in enumerate(content))
        else:
            yield content, where


def _key(path: str, key: object) -> str:
    text = str(key)
    return f"{path}.{text}" if NAME.match(text) else f"{path}[{json.dumps(text)}]"
