"""Every use of a tenant's JSON Schema: checked when saved, applied when an execution starts.

A tenant schema is hostile data. It never makes the process open a connection or a file
(references resolve inside the document or not at all), its regexes run on RE2 in linear
time, and its size, depth and the work one validation may do are bounded, so a schema can
neither hang the event loop nor turn into INTERNAL: whatever goes wrong is a `Problem`.
"""

from engine.schemas.checks import check_schema
from engine.schemas.problems import (
    MAX_PATTERNS,
    MAX_PROBLEMS,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    Problem,
)
from engine.schemas.runtime import validate, validate_quickly

__all__ = [
    "MAX_PATTERNS",
    "MAX_PROBLEMS",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "Problem",
    "check_schema",
    "validate",
    "validate_quickly",
]
