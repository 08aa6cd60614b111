"""The inline built-in tools: `transform` and `log`. Each runs inside its step's transaction."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from engine.tools.registry import StepFailure, ToolCall, ToolMode, ToolSpec, closed_object
from foundation.settings import Settings

logger = logging.getLogger("wfe.steps")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class TransformTool:
    """Builds a value from literals and paths; the paths were resolved before the call."""

    spec: ClassVar[ToolSpec] = ToolSpec(
        name="transform",
        description="Builds a value from literals and paths into earlier outputs.",
        arguments_schema=closed_object({"values": {"type": "object"}}, required=("values",)),
        output_schema={"type": "object"},
        mode=ToolMode.INLINE,
    )

    def __init__(self, settings: Settings) -> None:
        pass

    async def run(self, call: ToolCall) -> Any:
        if "values" not in call.arguments:
            raise StepFailure("invalid_arguments", "transform needs `values`", retryable=False)
        return call.arguments["values"]


class LogTool:
    """Writes a message to the execution's log (an event) and to the worker's log."""

    spec: ClassVar[ToolSpec] = ToolSpec(
        name="log",
        description="Writes a message to the execution's log.",
        arguments_schema=closed_object(
            {
                "message": {"type": "string", "minLength": 1},
                "level": {"enum": sorted(LEVELS)},
            },
            required=("message",),
        ),
        output_schema=closed_object(
            {"message": {"type": "string"}, "level": {"enum": sorted(LEVELS)}},
            required=("message", "level"),
        ),
        mode=ToolMode.INLINE,
    )

    def __init__(self, settings: Settings) -> None:
        pass

    async def run(self, call: ToolCall) -> Any:
        message = call.arguments.get("message")
        level = str(call.arguments.get("level") or "info")
        if not isinstance(message, str) or level not in LEVELS:
            raise StepFailure(
                "invalid_arguments", "log needs a text `message` and a known level", retryable=False
            )
        logger.log(LEVELS[level], "%s [%s/%s]", message, call.execution_id, call.step_id)
        call.log.append({"level": level, "message": message})
        return {"message": message, "level": level}
