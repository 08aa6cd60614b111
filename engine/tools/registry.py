"""What a `tool` step calls: the tool protocol, its failures, and the registry.

Tools are found through the `wfe.tools` entry point group, so an adapter package
plugs in by declaring an entry point; the engine never names a tool. An entry
point names a factory taking the service `Settings` and returning a `Tool`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from tenancy import TenantId

if TYPE_CHECKING:
    from foundation.settings import Settings

ENTRY_POINT_GROUP: Final = "wfe.tools"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One attempt of a tool step: who asks, with what arguments, and how long it may take.

    `idempotency_key` is the same on every delivery of the same attempt, so an external
    system that honours it applies the attempt's effect once however often it is sent.
    """

    tenant_id: TenantId
    execution_id: str
    step_id: str
    attempt: int
    arguments: Mapping[str, Any]
    timeout_seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def idempotency_key(self) -> str:
        return f"{self.execution_id}:{self.step_id}:{self.attempt}"


class StepFailure(Exception):
    """A step attempt failed; the step's retry and error policies decide what follows.

    Args:
        code: Machine-readable, lower_snake_case (e.g. `external_service_error`); a
            step's `non_retryable_codes` name these.
        message: Readable, safe to show the tenant.
        details: More context (a status line, a timeout), also shown.
        retryable: False when trying again cannot help (a refused address, bad arguments).
    """

    def __init__(
        self, code: str, message: str, *, details: str = "", retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


@runtime_checkable
class Tool(Protocol):
    """A built-in or plugged-in action.

    `pure` tools touch nothing outside the execution (they compute from their
    arguments), so the engine may run them inside the transaction that records them.
    """

    name: str
    description: str
    arguments_schema: dict[str, Any]
    pure: bool

    async def run(self, call: ToolCall) -> Any:
        """The step's output (JSON-like), or raise `StepFailure`."""
        ...


class ToolFactory(Protocol):
    def __call__(self, settings: Settings) -> Tool: ...


@cache
def factories() -> dict[str, ToolFactory]:
    """Every registered tool factory by tool name (entry point name)."""
    found: dict[str, ToolFactory] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found[point.name] = point.load()
    return found


class ToolRegistry:
    """The tools available to one process, built once from the settings."""

    def __init__(self, settings: Settings, tools: Mapping[str, Tool] | None = None) -> None:
        built = (
            dict(tools)
            if tools is not None
            else {name: factory(settings) for name, factory in factories().items()}
        )
        for name, tool in built.items():
            if tool.name != name:
                raise RuntimeError(f"entry point {name!r} builds a tool named {tool.name!r}")
        self._tools = built

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise StepFailure(
                "unknown_tool", f"no tool named {name!r} is installed", retryable=False
            )
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)
