"""The pure built-in tools: `transform` and `log`. Each runs inside its step's transaction."""

from __future__ import annotations

import logging
from typing import Any

from engine.steptypes import TOOLS
from engine.tools import StepFailure, ToolCall
from foundation.settings import Settings

logger = logging.getLogger("wfe.steps")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS["error"] = logging.ERROR


class TransformTool:
    """Builds a value from literals and paths; the paths were resolved before the call."""

    name = "transform"
    description = TOOLS["transform"].description
    arguments_schema = TOOLS["transform"].arguments_schema
    pure = True

    async def run(self, call: ToolCall) -> Any:
        if "values" not in call.arguments:
            raise StepFailure("invalid_arguments", "transform needs `values`", retryable=False)
        return call.arguments["values"]


class LogTool:
    """Writes a message to the execution's log (an event) and to the worker's log."""

    name = "log"
    description = TOOLS["log"].description
    arguments_schema = TOOLS["log"].arguments_schema
    pure = True

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


def transform(settings: Settings) -> TransformTool:
    return TransformTool()


def log(settings: Settings) -> LogTool:
    return LogTool()
