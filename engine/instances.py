"""Step instances: which run of a step an attempt belongs to.

A step outside any loop runs once per execution (retries aside), and its attempts are keyed
by its id. A step in a loop's body runs once per iteration, so its attempts are keyed by an
instance id: the step id, `@`, then the iteration of each loop around it, outermost first
(`verify_receipt@verify_lines:3`, `check@outer:2/inner:0`). Step ids never hold `@`, `:`
or `/`, so an instance id reads back unambiguously. Outputs are kept by instance id too,
which is how a body step reads what its own iteration's earlier steps produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_LOOP_NESTING: Final = 3
"""Loops inside loops, at most: the deepest instance id fits its 400-character column."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One iteration of one loop."""

    loop_id: str
    index: int

    def render(self) -> str:
        return f"{self.loop_id}:{self.index}"


Scope = tuple[Frame, ...]
"""The iterations around a step, outermost first; () outside every loop."""


def base(instance: str) -> str:
    """The step id of an instance id (itself outside any loop)."""
    at = instance.find("@")
    return instance if at < 0 else instance[:at]


def scope_of(instance: str) -> Scope:
    at = instance.find("@")
    if at < 0:
        return ()
    frames = []
    for part in instance[at + 1 :].split("/"):
        loop_id, _, index = part.rpartition(":")
        frames.append(Frame(loop_id, int(index)))
    return tuple(frames)


def render_scope(scope: Scope) -> str:
    return "/".join(frame.render() for frame in scope)


def instance_of(step_id: str, scope: Scope) -> str:
    """The instance id of `step_id` run within `scope`."""
    return f"{step_id}@{render_scope(scope)}" if scope else step_id


def same_scope(instance: str, step_id: str) -> str:
    """The instance of `step_id` in the scope `instance` runs in (a next step's)."""
    at = instance.find("@")
    return step_id if at < 0 else step_id + instance[at:]


def enter(instance: str, loop_id: str, index: int, body: str) -> str:
    """The instance of a loop's `body` step in iteration `index` of the loop `instance`."""
    return instance_of(body, (*scope_of(instance), Frame(loop_id, index)))


def innermost(instance: str) -> Frame | None:
    scope = scope_of(instance)
    return scope[-1] if scope else None


def leave(instance: str, loop_id: str) -> str:
    """The loop's own instance, from one of its body's (its scope minus the last frame)."""
    return instance_of(loop_id, scope_of(instance)[:-1])
