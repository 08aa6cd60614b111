"""Durations as a stored definition holds them: protobuf JSON strings such as "1.5s"."""

from __future__ import annotations

import re
from typing import Final

DURATION: Final = re.compile(r"^(\d{1,12})(\.\d{1,9})?s$")


def seconds(value: object) -> float | None:
    """A protobuf JSON duration ("1.5s") in seconds, or None if it is not one."""
    if not isinstance(value, str):
        return None
    match = DURATION.fullmatch(value)
    return None if match is None else float(match.group(1) + (match.group(2) or ""))
