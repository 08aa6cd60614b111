"""Every scalar a request message holds, with the field path a violation names it by.

The walk is iterative (a Struct nested as deep as the decoder allows costs no recursion),
visits `Struct`/`Value`/`ListValue` as the JSON they stand for, and yields map and Struct
keys as well as values, in a stable order (keys sorted), so the first problem found is the
same on every call.

Naming every scalar's path is most of that walk's cost, and nearly every request has no
problem to name: `leaves` visits the same scalars without paths or order, about three times
faster, so a check asks it first and walks `scalars` only to name what it found.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Final

from google.protobuf.message import Message

STRUCT: Final = "google.protobuf.Struct"
VALUE: Final = "google.protobuf.Value"
LIST: Final = "google.protobuf.ListValue"
NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def scalars(message: Message, path: str = "") -> Iterator[tuple[object, str]]:
    """(value, path) for every scalar and every key in `message`, depth first."""
    pending: list[tuple[object, str]] = [(message, path)]
    while pending:
        current, where = pending.pop()
        if not isinstance(current, Message):
            yield current, where
            continue
        name = current.DESCRIPTOR.full_name
        if name == VALUE:
            kind = current.WhichOneof("kind")
            if kind is not None and kind != "null_value":
                pending.append((getattr(current, kind), where))
        elif name == STRUCT:
            for key, item in sorted(current.fields.items(), reverse=True):
                pending.extend([(item, child(where, key)), (key, where)])
        elif name == LIST:
            pending.extend(
                (item, f"{where}[{index}]")
                for index, item in reversed(list(enumerate(current.values)))
            )
        else:
            pending.extend(reversed(list(_fields(current, where))))


def leaves(message: Message) -> Iterator[object]:
    """Every scalar and key in `message`, as `scalars` visits them, in no set order."""
    pending: list[Message] = [message]
    while pending:
        current = pending.pop()
        name = current.DESCRIPTOR.full_name
        if name == STRUCT:
            for key, item in current.fields.items():
                yield key
                pending.append(item)
        elif name == VALUE:
            kind = current.WhichOneof("kind")
            if kind is None or kind == "null_value":
                continue
            content = getattr(current, kind)
            if isinstance(content, Message):
                pending.append(content)
            else:
                yield content
        elif name == LIST:
            pending.extend(current.values)
        else:
            for field, content in current.ListFields():
                if field.message_type is None:
                    if field.is_repeated:
                        yield from content
                    else:
                        yield content
                elif field.message_type.GetOptions().map_entry:
                    for key, item in content.items():
                        yield key
                        if isinstance(item, Message):
                            pending.append(item)
                        else:
                            yield item
                elif field.is_repeated:
                    pending.extend(content)
                else:
                    pending.append(content)


def _fields(message: Message, path: str) -> Iterator[tuple[object, str]]:
    for field, content in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in sorted(content.items()):
                yield key, where
                yield item, child(where, key)
        elif field.is_repeated:
            yield from ((item, f"{where}[{index}]") for index, item in enumerate(content))
        else:
            yield content, where


def child(path: str, key: object) -> str:
    """The path of `key` under `path`: `a.b` for a plain name, `a["b c"]` otherwise."""
    text = str(key)
    return f"{path}.{text}" if NAME.match(text) else f"{path}[{json.dumps(text)}]"
