"""Subscription topics: which events of the log a live stream receives.

Seed 004's topics, read as two families. Workflow topics carry the workflows' own
changes (events without an execution: `workflow_updated`); execution topics carry
executions' progress (every event with an execution). So a client following
`execution:<id>` and `workflow:<id>` (the seed's monitor does) gets each event once, and
never another execution's progress.

- `workflow:<id>`: the changes of that workflow;
- `execution:<id>`: the events of that execution;
- `all_workflows`, `all_executions`: the same, for every workflow or execution of the
  tenant (admin only: `tenancy.roles.authorize_topics`);
- `notifications`: the caller's own notifications (`NOTIFICATION` events, each addressed
  to one user of the tenant, which no other topic carries).

A topic names no tenant: it is matched within the caller's tenant only, so another
tenant's id matches nothing, as an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from foundation.errors import FieldViolation, InvalidInput

ALL_WORKFLOWS: Final = "all_workflows"
ALL_EXECUTIONS: Final = "all_executions"
NOTIFICATIONS: Final = "notifications"
NOTIFICATION: Final = "notification"
"""The event a notification appends; its payload's `user_id` is whom it is for."""
ENDS_EXECUTION: Final = "workflow_execution_completed"
"""The event an execution appends when it reaches a terminal status."""
MAX_TOPICS: Final = 100
MAX_ID_LENGTH: Final = 64  # the width of the log's topic key columns


@dataclass(frozen=True, slots=True)
class Topics:
    """What one subscription follows."""

    workflows: frozenset[str] = frozenset()
    executions: frozenset[str] = frozenset()
    all_workflows: bool = False
    all_executions: bool = False
    recipient: str | None = None
    """The user whose notifications the subscription receives, if any."""

    @classmethod
    def of_execution(cls, execution_id: str) -> Topics:
        return cls(executions=frozenset({execution_id}))

    def matches(
        self, workflow_id: str | None, execution_id: str | None, recipient: str | None = None
    ) -> bool:
        """Whether an event with these topic keys (and, for a notification, this
        recipient) belongs to the subscription."""
        if recipient is not None:
            return recipient == self.recipient
        if execution_id is not None:
            return self.all_executions or execution_id in self.executions
        return self.all_workflows or (workflow_id is not None and workflow_id in self.workflows)


def parse(names: Sequence[str], field: str = "topics", *, user: str | None = None) -> Topics:
    """The topics a request by `user` names; INVALID_INPUT, one violation per bad topic,
    otherwise."""
    if not names:
        raise InvalidInput(
            "name at least one topic", violations=[FieldViolation(field, "at least one topic")]
        )
    if len(names) > MAX_TOPICS:
        raise InvalidInput(
            f"at most {MAX_TOPICS} topics per subscription",
            metadata={"limit": MAX_TOPICS, "topics": len(names)},
            violations=[FieldViolation(field, f"at most {MAX_TOPICS} topics")],
        )
    workflows: set[str] = set()
    executions: set[str] = set()
    problems: list[FieldViolation] = []
    for index, name in enumerate(names):
        kind, _, ident = name.partition(":")
        if name in (ALL_WORKFLOWS, ALL_EXECUTIONS) or (name == NOTIFICATIONS and user):
            continue
        if kind in ("workflow", "execution") and 0 < len(ident) <= MAX_ID_LENGTH:
            (workflows if kind == "workflow" else executions).add(ident)
            continue
        problems.append(
            FieldViolation(
                f"{field}[{index}]",
                f"`workflow:<id>`, `execution:<id>` (ids of 1 to {MAX_ID_LENGTH} characters), "
                f"`{ALL_WORKFLOWS}`, `{ALL_EXECUTIONS}` or `{NOTIFICATIONS}`",
            )
        )
    if problems:
        raise InvalidInput(f"{len(problems)} topic(s) not understood", violations=problems)
    return Topics(
        workflows=frozenset(workflows),
        executions=frozenset(executions),
        all_workflows=ALL_WORKFLOWS in names,
        all_executions=ALL_EXECUTIONS in names,
        recipient=user if NOTIFICATIONS in names else None,
    )
