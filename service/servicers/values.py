"""Tenant-sent `google.protobuf.Struct`/`Value` data, checked before anything reads it.

A Struct's numbers are doubles, so a client can send NaN or Infinity, which JSON (and
so the stored form, jsonschema and the expression language) cannot carry. Every
servicer converts request Structs here, so such a value is refused as the client's
mistake, naming where it is, instead of failing later as an internal error.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message

from engine.sizes import encoded_size
from foundation.errors import FieldViolation, InvalidInput, WfeError
from service import offload
from service.fields import leaves, scalars

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


def struct_to_sized_dict(
    message: Message, path: str, error: type[WfeError] = InvalidInput
) -> tuple[dict[str, Any], int]:
    """`struct_to_dict`, and the result's `encoded_size` (what plan size limits compare)."""
    converted = struct_to_dict(message, path, error)
    return converted, encoded_size(converted)


async def finite(message: Message, path: str, error: type[WfeError] = InvalidInput) -> None:
    """`require_finite`, off the event loop when the message is large."""
    await offload.run_sized(message.ByteSize(), require_finite, message, path, error)


async def finite_dict(
    message: Message, path: str, error: type[WfeError] = InvalidInput
) -> dict[str, Any]:
    """`struct_to_dict`, off the event loop when the message is large."""
    return await offload.run_sized(message.ByteSize(), struct_to_dict, message, path, error)


async def finite_sized_dict(
    message: Message, path: str, error: type[WfeError] = InvalidInput
) -> tuple[dict[str, Any], int]:
    """`struct_to_sized_dict`, off the event loop when the message is large: encoding a
    large input to measure it costs as much as converting it."""
    return await offload.run_sized(message.ByteSize(), struct_to_sized_dict, message, path, error)


def non_finite(message: Message, path: str) -> Iterator[str]:
    """The paths of the non-finite numbers in `message`, in order."""
    if all(math.isfinite(value) for value in leaves(message) if isinstance(value, float)):
        return
    for value, where in scalars(message, path):
        if isinstance(value, float) and not math.isfinite(value):
            yield where
