"""The shape rules of loops and parallels: a body returns to its loop, a branch ends alone.

A loop's body is the steps its `body` leads to before the path comes back to the loop; each
iteration runs them, and what the last one outputs is that iteration's result. A parallel's
branch is the steps its first step leads to; it ends where its path ends, and the step after
the parallel runs once the join is met. So a body must come back (and never reach what
runs after the loop), branches must not share steps or lead past their parallel, and loops
nest at most `MAX_LOOP_NESTING` deep (an iteration's steps are keyed by every loop around
them).

Each rule walks the graph once per loop or parallel; a definition whose walks would go past
`WALK_BUDGET` steps in all is refused instead of checked. That bounds validation, and the
engine, which walks the same bodies and branches when it reads a definition
(`engine.graph`), at every step of every execution of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from engine.instances import MAX_LOOP_NESTING
from service.workflows.issues import Report
from service.workflows.steps import StepFacts

WALK_BUDGET: Final = 100_000


class _OverBudget(Exception):
    pass


class _Walker:
    def __init__(self, successors: Mapping[str, Sequence[str]]) -> None:
        self.successors = successors
        self.left = WALK_BUDGET

    def reach(self, starts: Sequence[str], stop: str | None = None) -> set[str]:
        """The steps reachable from `starts` (included), not going through `stop`."""
        seen: set[str] = set()
        pending = [s for s in starts if s != stop]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            self.left -= 1
            if self.left < 0:
                raise _OverBudget
            seen.add(current)
            pending.extend(t for t in self.successors[current] if t != stop and t not in seen)
        return seen


def check_scopes(
    facts: Mapping[str, StepFacts], successors: Mapping[str, Sequence[str]], report: Report
) -> None:
    walker = _Walker(successors)
    try:
        branches = _check_parallels(facts, walker, report)
        _check_loops(facts, walker, branches, report)
    except _OverBudget:
        report.error(
            "graph_too_complex",
            "the loops and parallels of this workflow lead through too many steps to check; "
            "split it into smaller workflows",
            field="steps",
        )


def _targets(step: StepFacts, suffix: str, facts: Mapping[str, StepFacts]) -> list[str]:
    return [t for t, field in step.edges if field.endswith(suffix) and t in facts]


def _check_parallels(
    facts: Mapping[str, StepFacts], walker: _Walker, report: Report
) -> dict[str, set[str]]:
    """Each parallel's branches' steps, by parallel id; errors for shared or escaping steps."""
    found: dict[str, set[str]] = {}
    for step in facts.values():
        if step.type != "parallel":
            continue
        after = walker.reach(_targets(step, ".next", facts), stop=step.id) | {step.id}
        owner: dict[str, str] = {}
        members: set[str] = set()
        for start in (t for t, field in step.edges if ".branches[" in field and t in facts):
            reached = walker.reach([start])
            for member in sorted(reached):
                if member in owner:
                    report.error(
                        "branches_overlap",
                        f"step {member!r} is on branch {owner[member]!r} and on branch "
                        f"{start!r} of parallel {step.id!r}; each branch needs steps of its own",
                        step_id=step.id,
                    )
                    break
                owner[member] = start
            escaped = sorted(reached & after)
            if escaped:
                report.error(
                    "branch_escapes",
                    f"branch {start!r} of parallel {step.id!r} leads to {escaped[0]!r}, which "
                    "is the parallel or runs after it; a branch ends where its path ends",
                    step_id=step.id,
                )
            members |= reached
        found[step.id] = members
    return found


def _check_loops(
    facts: Mapping[str, StepFacts],
    walker: _Walker,
    branches: Mapping[str, set[str]],
    report: Report,
) -> None:
    depth = dict.fromkeys(facts, 0)
    for step in facts.values():
        if step.type != "loop":
            continue
        starts = _targets(step, ".config.body", facts)
        if not starts:
            continue
        body = walker.reach(starts, stop=step.id)
        for member in body:
            depth[member] += 1
        if not any(step.id in walker.successors[member_id] for member_id in body):
            report.error(
                "loop_body_not_closed",
                f"the body of loop {step.id!r} (from {starts[0]!r}) never returns to the loop",
                step_id=step.id,
            )
            continue
        after = walker.reach(_targets(step, ".next", facts), stop=step.id)
        escaped = sorted(body & after)
        if escaped:
            report.error(
                "loop_body_escapes",
                f"step {escaped[0]!r} is in the body of loop {step.id!r} and also runs after "
                "the loop; a body's paths return to the loop",
                step_id=step.id,
            )
            continue
        on_branch = set().union(
            *(members for parallel, members in branches.items() if parallel in body)
        )
        for member in sorted(body):
            if not walker.successors[member] and member not in on_branch:
                report.error(
                    "loop_body_not_closed",
                    f"the path through {member!r} ends without returning to loop {step.id!r}",
                    step_id=member,
                )
    for step_id, loops in depth.items():
        if loops > MAX_LOOP_NESTING:
            report.error(
                "loop_nesting_too_deep",
                f"step {step_id!r} is inside {loops} loops; loops nest at most "
                f"{MAX_LOOP_NESTING} deep",
                step_id=step_id,
            )
            return
