"""What the schema checks share: their limits, the `Problem` they report, RE2 and a registry
that never retrieves anything."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final, NamedTuple

import re2  # type: ignore[import-untyped]
from referencing import Registry, Resource

# Checking against the meta-schema costs about 10 ms per KiB of CPU: 32 KiB is
# many times any real input schema and keeps a save under half a second.
MAX_SCHEMA_BYTES: Final = 32 * 1024
# Compiling a pattern up to RE2's memory cap costs up to 2 ms; this bounds a schema's total.
MAX_PATTERNS: Final = 100
MAX_SCHEMA_DEPTH: Final = 32
MAX_PROBLEMS: Final = 50
MAX_MESSAGE: Final = 300
# Keyword evaluations one validation may make (about 10 µs each, so well under a second):
# `$ref`s and `unevaluated*` can multiply the work of a small schema far beyond its size.
MAX_EVALUATIONS: Final = 50_000
DIALECTS: Final = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2020-12/schema#",
    }
)
REFERENCES: Final = ("$ref", "$dynamicRef")
# Applicators that evaluate a subschema against the same instance: a cycle of them never ends.
IN_PLACE_ONE: Final = ("not", "if", "then", "else")
IN_PLACE_MANY: Final = ("allOf", "anyOf", "oneOf")

Path = tuple[str | int, ...]


class Problem(NamedTuple):
    """One thing wrong: where (keys and indexes) and what.

    `in_schema` says the schema itself is unusable, rather than the value breaking it.
    """

    path: Path
    message: str
    in_schema: bool = False


def order(part: str | int) -> tuple[int, int, str]:
    return (0, part, "") if isinstance(part, int) else (1, 0, part)


def short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def no_retrieval(uri: str) -> Resource[Any]:
    raise LookupError(f"{uri!r} is outside the schema; nothing is fetched")


@lru_cache(maxsize=1)
def registry() -> Registry[Any]:
    return Registry(retrieve=no_retrieval)  # type: ignore[call-arg]


@lru_cache(maxsize=256)
def regex(pattern: str) -> Any:
    """RE2: linear in the text, whatever the pattern; memory capped per expression."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 256 * 1024  # ample for real patterns; compiling never takes long
    return re2.compile(pattern, options)
