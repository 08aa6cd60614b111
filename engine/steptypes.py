"""The step types a workflow may use, the plan level each needs, and its config's JSON Schema.

The schemas are the single source for validating a step's `config` and are published
through `ListStepTypes`, so a visual editor can build its forms from them. Which tools a
`tool` step may call comes from the tool registry (`engine.tools`), not from here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from engine.aggregation import STRATEGIES
from engine.tools.registry import TOOL_NAME, closed_object
from tiers import StepTypeAccess

STEP_ID_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"
PATH = {"type": "string", "pattern": r"^\$", "description": "a path such as $.input.customer"}
STEP_REF = {"type": "string", "pattern": STEP_ID_PATTERN, "description": "a step id"}
MINIMUM_TIER: Final = {
    StepTypeAccess.BASIC: "free",
    StepTypeAccess.ADVANCED: "professional",
    StepTypeAccess.ALL_AND_CUSTOM: "enterprise",
}
"""The lowest tier whose plan reaches each level of step-type access."""


@dataclass(frozen=True, slots=True)
class StepType:
    """A kind of step: what it does, the plan level it needs and its config's schema."""

    name: str
    access: StepTypeAccess
    description: str
    config_schema: dict[str, Any]

    @property
    def category(self) -> str:
        return CATEGORIES[self.access]


CATEGORIES: Final = {
    StepTypeAccess.BASIC: "basic",
    StepTypeAccess.ADVANCED: "advanced",
    StepTypeAccess.ALL_AND_CUSTOM: "custom",
}

STEP_TYPES: Final[dict[str, StepType]] = {
    step_type.name: step_type
    for step_type in (
        StepType(
            "input",
            StepTypeAccess.BASIC,
            "The entry step: its output is the execution's input, checked against input_schema.",
            closed_object({}),
        ),
        StepType(
            "output",
            StepTypeAccess.BASIC,
            "Ends a path of the workflow; `values` (literals or paths) become the result.",
            closed_object({"values": {"type": "object"}}),
        ),
        StepType(
            "condition",
            StepTypeAccess.BASIC,
            "Branches: the first condition that holds chooses `next`, otherwise `default`.",
            closed_object(
                {
                    "conditions": {
                        "type": "array",
                        "minItems": 1,
                        "items": closed_object(
                            {"condition": {"type": "string", "minLength": 1}, "next": STEP_REF},
                            required=("condition", "next"),
                        ),
                    },
                    "default": STEP_REF,
                },
                required=("conditions",),
            ),
        ),
        StepType(
            "tool",
            StepTypeAccess.BASIC,
            "Calls an installed tool (built-in or plugged in) with arguments (literals or paths).",
            closed_object(
                {
                    "tool": {"type": "string", "pattern": TOOL_NAME.pattern},
                    "arguments": {"type": "object"},
                },
                required=("tool",),
            ),
        ),
        StepType(
            "loop",
            StepTypeAccess.ADVANCED,
            "Runs the chain starting at `body` once per item of `over` (or while `while` "
            "holds); the chain ends by returning to the loop step. The body reads "
            "$.<loop>.item and $.<loop>.index; after the loop, $.<loop>.results holds each "
            "iteration's last output, in order. `concurrency` iterations run at once.",
            {
                **closed_object(
                    {
                        "over": PATH,
                        "while": {"type": "string", "minLength": 1, "maxLength": 2000},
                        "body": STEP_REF,
                        "max_iterations": {"type": "integer", "minimum": 1, "maximum": 10000},
                        "concurrency": {"type": "integer", "minimum": 1, "maximum": 50},
                    },
                    required=("body",),
                ),
                "oneOf": [{"required": ["over"]}, {"required": ["while"]}],
            },
        ),
        StepType(
            "parallel",
            StepTypeAccess.ADVANCED,
            "Runs each branch's chain at once; `next` follows when the join is met: `all` "
            "branches, `any` one (the others are cancelled) or `n_of_m` (`n` of them).",
            closed_object(
                {
                    "branches": {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 50,
                        "uniqueItems": True,
                        "items": STEP_REF,
                    },
                    "join": {"enum": ["all", "any", "n_of_m"]},
                    "n": {"type": "integer", "minimum": 1, "maximum": 50},
                },
                required=("branches",),
            ),
        ),
        StepType(
            "aggregate",
            StepTypeAccess.ADVANCED,
            "Combines earlier outputs (`sources`, paths; a loop's results, a parallel's "
            "branches) into one value; `path` reads one field of each item first.",
            closed_object(
                {
                    "sources": {"type": "array", "minItems": 1, "maxItems": 50, "items": PATH},
                    "strategy": {"enum": list(STRATEGIES)},
                    "path": PATH,
                },
                required=("sources",),
            ),
        ),
        StepType(
            "wait",
            StepTypeAccess.ADVANCED,
            "Pauses the execution for `seconds`, or until the time a path names.",
            {
                **closed_object(
                    {
                        "seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 2592000},
                        "until": PATH,
                    }
                ),
                "minProperties": 1,
                "maxProperties": 1,
            },
        ),
        StepType(
            "webhook",
            StepTypeAccess.ADVANCED,
            "Optionally calls out (`request`: http_request's arguments, which may carry the "
            "callback token as $.<step>.token), then waits for CompleteWebhook with that "
            "token; its payload is the output. Past `timeout_seconds` the step fails with "
            "webhook_timeout.",
            closed_object(
                {
                    "event": {"type": "string", "minLength": 1, "maxLength": 200},
                    "timeout_seconds": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 2592000,
                    },
                    "request": {"type": "object"},
                    "wait": {"type": "boolean"},
                },
                required=("event",),
            ),
        ),
        StepType(
            "custom",
            StepTypeAccess.ALL_AND_CUSTOM,
            "Calls one of the tenant's own adapters with arguments.",
            closed_object(
                {
                    "adapter": {"type": "string", "pattern": r"^[a-z][a-z0-9_.-]{0,99}$"},
                    "arguments": {"type": "object"},
                },
                required=("adapter",),
            ),
        ),
    )
}


def published_schema(step_type: StepType, tool_names: Sequence[str]) -> dict[str, Any]:
    """The config schema as `ListStepTypes` shows it: a `tool` step lists the installed tools."""
    if step_type.name != "tool":
        return step_type.config_schema
    schema = copy.deepcopy(step_type.config_schema)
    schema["properties"]["tool"] = {"enum": list(tool_names)}
    return schema
