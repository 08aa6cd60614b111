"""What a `tool` step calls: the tool protocol, its failures, the registry and the built-ins."""

from engine.tools.registry import StepFailure, Tool, ToolCall, ToolFactory, ToolRegistry, factories

__all__ = ["StepFailure", "Tool", "ToolCall", "ToolFactory", "ToolRegistry", "factories"]
