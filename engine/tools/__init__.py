"""What a `tool` step calls: the tool protocol, its failures, the registry and the built-ins."""

from engine.tools.registry import (
    ENTRY_POINT_GROUP,
    StepFailure,
    Tool,
    ToolCall,
    ToolCatalog,
    ToolFactory,
    ToolMode,
    ToolRegistrationError,
    ToolRegistry,
    ToolSpec,
    installed,
    load,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "StepFailure",
    "Tool",
    "ToolCall",
    "ToolCatalog",
    "ToolFactory",
    "ToolMode",
    "ToolRegistrationError",
    "ToolRegistry",
    "ToolSpec",
    "installed",
    "load",
]
