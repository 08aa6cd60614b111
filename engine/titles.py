"""A readable title for a step that has no `name`: its id, as words.

`send_email`, `send-email` and `sendEmail` all read "Send email"; acronyms keep their
capitals (`callHTTPService` reads "Call HTTP service"). Progress entries and diagrams
show this title, so a step never appears under a bare identifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def title_of(step_id: str) -> str:
    """`step_id` as a sentence-case title; the id itself when it holds no words."""
    words: list[str] = []
    for word in WORD.findall(step_id):
        if word.isdigit() and words and len(words[-1]) == 1:
            words[-1] += word  # `s0` reads "S0", `v2` "v2"
        else:
            words.append(word if len(word) > 1 and word.isupper() else word.lower())
    if not words:
        return step_id
    text = " ".join(words)
    return text[0].upper() + text[1:]


def step_title(step: Mapping[str, Any]) -> str:
    """The step's `name` when it has one, else a title made from its id."""
    name = step.get("name")
    if isinstance(name, str) and name.strip():
        return name
    step_id = step.get("id")
    return title_of(step_id) if isinstance(step_id, str) else ""
