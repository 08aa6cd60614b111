"""What a path can read from a step's output, judged from the output's JSON Schema.

Only a closed object (`additionalProperties: false`, no pattern properties) proves that
a field does not exist; anything open, combined (`anyOf`, `$ref`…) or untyped proves
nothing, so the check never warns on a path that might hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MissingField:
    """The first segment of a path that the output cannot have, and what it has there."""

    field: str
    depth: int
    known: tuple[str, ...]


def missing_field(schema: object, segments: Sequence[str | int]) -> MissingField | None:
    """Where `segments` leave what `schema` allows, if they provably do."""
    for depth, segment in enumerate(segments):
        if not isinstance(schema, Mapping):
            return None
        if isinstance(segment, int):
            schema = schema.get("items")
            continue
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        if segment in properties:
            schema = properties[segment]
        elif _closed(schema):
            return MissingField(segment, depth, tuple(sorted(properties)))
        else:
            return None
    return None


def _closed(schema: Mapping[str, Any]) -> bool:
    return (
        schema.get("additionalProperties") is False
        and not schema.get("patternProperties")
        and not any(key in schema for key in ("$ref", "anyOf", "oneOf", "allOf", "if"))
    )
