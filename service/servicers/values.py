"""Tenant-sent `google.protobuf.Struct`/`Value` data, checked before anything reads it.

A Struct's numbers are doubles, so a client can send NaN or Infinity, which JSON (and
so the stored form, jsonschema and the expression language) cannot carry. Every
servicer converts request Structs here, so such a value is refused as the client's
mistake, naming where it is, instead of failing later as an internal error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message

from foundation.errors import FieldViolation, InvalidInput, WfeError
from service import offload

STRUCT: Final = "google.protobuf.Struct"
VALUE: Final = "google.protobuf.Value"
LIST: Final = "google.protobuf.ListValue"
NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WHY: Final = "NaN and Infinity are not allowed: JSON cannot carry them"


def require_finite(message: Message, path: str, error: type[WfeError] = InvalidInput) -> None:
    """Raise `error` listing every NaN or Infinity in any Struct or Value inside `message`."""
    found = list(non_finite(message, path))
    if found:
        raise error(
            f"{found[0]} is not a finite number; {WHY}",
            metadata={"non_finite_values": len(found)},
            violations=[FieldViolation(where, WHY) for where in found],
        )


def struct_to_dict(
    message: Message, path: str, error: type[WfeError] = InvalidInput
) -> dict[str, Any]:
    """A request's Struct as a dict, refused with `error` if it holds NaN or Infinity."""
    require_finite(message, path, error)
    converted: dict[str, Any] = json_format.MessageToDict(message)
    return converted


async def finite(message: Message, path: str, error: type[WfeError] = InvalidInput) -> None:
    """`require_finite`, off the event loop when the message is large."""
    await offload.run_sized(message.ByteSize(), require_finite, message, path, error)


async def finite_dict(
    message: Message, path: str, error: type[WfeError] = InvalidInput
) -> dict[str, Any]:
    """`struct_to_dict`, off the event loop when the message is large."""
    return await offload.run_sized(message.ByteSize(), struct_to_dict, message, path, error)


def non_finite(message: Message, path: str) -> Iterator[str]:
    """The paths of the non-finite numbers in `message`, in order (iteratively: no depth limit)."""
    pending: list[tuple[Message, str]] = [(message, path)]
    while pending:
        current, where = pending.pop()
        name = current.DESCRIPTOR.full_name
        if name == VALUE:
            kind = current.WhichOneof("kind")
            if kind == "number_value" and not math.isfinite(current.number_value):
                yield where
            elif kind in ("struct_value", "list_value"):
                pending.append((getattr(current, kind), where))
        elif name == STRUCT:
            pending.extend(
                (item, _key(where, key))
                for key, item in sorted(current.fields.items(), reverse=True)
            )
        elif name == LIST:
            pending.extend(
                (item, f"{where}[{index}]")
                for index, item in reversed(list(enumerate(current.values)))
            )
        else:
            pending.extend(reversed(list(_children(current, where))))


def _children(message: Message, path: str) -> Iterator[tuple[Message, str]]:
    for field, content in message.ListFields():
        if field.message_type is None:
            continue
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                yield from ((item, _key(where, key)) for key, item in sorted(content.items()))
        elif field.is_repeated:
            yield from ((item, f"{where}[{index}]") for index, item in enumerate(content))
        else:
            yield content, where


def _key(path: str, key: object) -> str:
    text = str(key)
    return f"{path}.{text}" if NAME.match(text) else f"{path}[{json.dumps(text)}]"
